//! `palmline-lab` as a user runs it: generate a small set of hands, evaluate it, cut the
//! ROIs out of it, and evaluate the crops as a data set of ROIs (detected by itself).

use serde_json::Value;
use std::path::Path;
use std::process::Command;

fn lab(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_palmline-lab"))
        .args(args)
        .output()
        .expect("palmline-lab runs");
    assert!(
        out.status.success(),
        "palmline-lab {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn eval(dir: &Path, json: &Path, extra: &[&str]) -> (Value, String) {
    let csv = json.with_extension("csv");
    let mut args = vec![
        "eval",
        "--images",
        dir.to_str().unwrap(),
        "--matcher",
        "ours",
        "--json",
        json.to_str().unwrap(),
        "--scores-out",
        csv.to_str().unwrap(),
        "--threads",
        "2",
    ];
    args.extend_from_slice(extra);
    let stderr = lab(&args);
    let v: Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    (v, stderr)
}

#[test]
fn synth_eval_roi_crops_and_eval_again() {
    let tmp = tempfile::tempdir().unwrap();
    let hands = tmp.path().join("hands");
    lab(&[
        "synth",
        "--out",
        hands.to_str().unwrap(),
        "--identities",
        "6",
        "--samples",
        "3",
        "--seed",
        "7",
    ]);
    let mut files: Vec<_> = std::fs::read_dir(&hands)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(files.len(), 18);
    assert_eq!(files[0], "00000_00.png");

    // Whole hands: read as hands, every probe acquired, genuine pairs above impostors.
    let (v, stderr) = eval(&hands, &tmp.path().join("hands.json"), &[]);
    assert!(stderr.contains("input: Hand"), "{stderr}");
    assert_eq!(v["input"], "hand");
    assert_eq!(v["identities"], 6);
    let r = &v["reports"][0];
    assert_eq!(r["matcher"], "ours");
    assert_eq!(r["genuine_comparisons"], 12);
    assert_eq!(r["impostor_comparisons"], 60);
    assert_eq!(r["failure_to_acquire"], 0.0);
    assert!(r["eer"].as_f64().unwrap() < 0.1, "{r}");

    // The ROIs cut from them, written under the same names: a data set of crops.
    let rois = tmp.path().join("rois");
    let paths: Vec<String> = files
        .iter()
        .map(|f| hands.join(f).to_str().unwrap().to_string())
        .collect();
    let mut args = vec!["roi", "--out", rois.to_str().unwrap()];
    args.extend(paths.iter().map(String::as_str));
    lab(&args);
    let img = image::open(rois.join("00000_00.png")).unwrap();
    assert_eq!((img.width(), img.height()), (208, 208));
    // `--inner`: only the keypoint area, the middle of the full ROI.
    let inner = tmp.path().join("inner");
    args[2] = inner.to_str().unwrap();
    args.insert(3, "--inner");
    lab(&args);
    let small = image::open(inner.join("00000_00.png")).unwrap().to_luma8();
    assert_eq!(small.dimensions(), (160, 160));
    let full = img.to_luma8();
    assert_eq!(small.get_pixel(0, 0), full.get_pixel(24, 24));
    assert_eq!(small.get_pixel(159, 80), full.get_pixel(183, 104));

    // Recognised as crops without being told, and still separating genuine from impostor.
    let (v, stderr) = eval(&rois, &tmp.path().join("rois.json"), &[]);
    assert!(stderr.contains("input: Roi"), "{stderr}");
    assert_eq!(v["input"], "roi");
    let r = &v["reports"][0];
    assert_eq!(r["failure_to_acquire"], 0.0);
    assert!(r["eer"].as_f64().unwrap() < 0.1, "{r}");

    // `--input` overrides the detection.
    let (v, stderr) = eval(&rois, &tmp.path().join("forced.json"), &["--input", "hand"]);
    assert_eq!(v["input"], "hand");
    assert!(!stderr.contains("auto:"), "{stderr}");
}
