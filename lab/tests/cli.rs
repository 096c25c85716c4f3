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
        // This test is about the ROI round trip, not hard captures.
        "--conditions",
        "easy",
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

/// Failures count: a probe that is not acquired and a palm that is not enrolled are genuine
/// attempts with an empty score, and the headline figures count them as non-matches.
#[test]
fn eval_counts_failures_and_writes_a_row_for_every_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let hands = tmp.path().join("hands");
    lab(&[
        "synth",
        "--out",
        hands.to_str().unwrap(),
        "--identities",
        "4",
        "--samples",
        "3",
        "--seed",
        "11",
    ]);
    let black = image::GrayImage::new(640, 480);
    // Identity 1's last probe and identity 2's enrollment capture are black frames.
    black.save(hands.join("00001_02.png")).unwrap();
    black.save(hands.join("00002_00.png")).unwrap();
    let json = tmp.path().join("e.json");
    let (v, _) = eval(&hands, &json, &[]);
    let r = &v["reports"][0];
    assert_eq!(r["genuine_attempts"], 8, "{r}");
    assert_eq!(r["failed_attempts"], 3, "{r}"); // 1 probe + the 2 probes of identity 2
    assert_eq!(r["failure_to_enroll"], 0.25);
    assert!(r["eer"].as_f64().unwrap() >= 3.0 / 8.0 - 1e-9, "{r}");
    assert!(r["acquired"]["eer"].as_f64().unwrap() < 0.1, "{r}");
    let fnmr = r["fnmr_at_fmr"][0]["fnmr"].as_f64().unwrap();
    assert!(fnmr >= 3.0 / 8.0 - 1e-9, "{r}");

    let csv = std::fs::read_to_string(json.with_extension("csv")).unwrap();
    let genuine: Vec<&str> = csv.lines().filter(|l| l.ends_with(",1")).collect();
    assert_eq!(genuine.len(), 8, "one genuine row per probe:\n{csv}");
    let empty: Vec<&str> = genuine
        .iter()
        .copied()
        .filter(|l| l.contains(",,"))
        .collect();
    assert_eq!(empty.len(), 3, "{empty:?}");
    assert!(empty
        .iter()
        .any(|l| l.starts_with("ours,00001_02.png,00001,,")));
    assert!(csv.lines().skip(1).all(|l| l.starts_with("ours,")));

    // `--matcher seed` writes only the seed's rows.
    let json = tmp.path().join("s.json");
    eval_with(&hands, &json, "seed");
    let csv = std::fs::read_to_string(json.with_extension("csv")).unwrap();
    assert!(csv.lines().skip(1).all(|l| l.starts_with("seed,")), "{csv}");
    assert_eq!(csv.lines().filter(|l| l.ends_with(",1")).count(), 8);
}

fn eval_with(dir: &Path, json: &Path, matcher: &str) {
    let csv = json.with_extension("csv");
    lab(&[
        "eval",
        "--images",
        dir.to_str().unwrap(),
        "--matcher",
        matcher,
        "--json",
        json.to_str().unwrap(),
        "--scores-out",
        csv.to_str().unwrap(),
    ]);
}

#[test]
fn eval_suite_runs_every_set_and_the_generated_one() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    lab(&[
        "synth",
        "--out",
        data.join("mini").to_str().unwrap(),
        "--identities",
        "3",
        "--samples",
        "2",
        "--seed",
        "5",
    ]);
    let out = tmp.path().join("out");
    let stdout = Command::new(env!("CARGO_BIN_EXE_palmline-lab"))
        .args(["eval-suite", "--data", data.to_str().unwrap()])
        .args(["--out", out.to_str().unwrap(), "--synth-identities", "3"])
        .args(["--synth-samples", "2"])
        .output()
        .unwrap();
    assert!(stdout.status.success());
    let table = String::from_utf8_lossy(&stdout.stdout);
    for (set, m) in [
        ("mini", "ours"),
        ("mini", "seed"),
        ("synth", "ours"),
        ("synth", "seed"),
    ] {
        assert!(
            table.lines().any(|l| l.starts_with(set) && l.contains(m)),
            "{set} {m} missing:\n{table}"
        );
    }
    let v: Value = serde_json::from_slice(&std::fs::read(out.join("suite.json")).unwrap()).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
    assert!(out.join("det.png").exists() && out.join("mini.csv").exists());
}

/// `bench-identify --images`: a folder of hands as enrolled palms, probes and held-out
/// strangers, with generated distractors for the second size; the index is compared with
/// exhaustive search over the same real palms.
#[test]
fn bench_identify_takes_an_image_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let hands = tmp.path().join("hands");
    lab(&[
        "synth",
        "--out",
        hands.to_str().unwrap(),
        "--identities",
        "10",
        "--samples",
        "5",
        "--seed",
        "11",
        "--conditions",
        "easy",
    ]);
    let json = tmp.path().join("ident.json");
    let cache = tmp.path().join("cache");
    lab(&[
        "bench-identify",
        "--images",
        hands.to_str().unwrap(),
        "--sizes",
        "0,12",
        "--enroll",
        "3",
        "--strangers",
        "2",
        "--pool",
        "10",
        "--k",
        "4",
        "--seed-probes",
        "0",
        "--threads",
        "2",
        "--cache",
        cache.to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
    ]);
    // Too small a pool for distractors is a clear error, not a hang.
    let out = Command::new(env!("CARGO_BIN_EXE_palmline-lab"))
        .args([
            "bench-identify",
            "--images",
            hands.to_str().unwrap(),
            "--sizes",
            "12",
        ])
        .args([
            "--pool",
            "3",
            "--seed-probes",
            "0",
            "--cache",
            cache.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pool"));
    let v: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let palms = v["real_palms"].as_u64().unwrap();
    let ftx =
        v["failures_to_enroll"].as_u64().unwrap() + v["failures_to_acquire"].as_u64().unwrap();
    // 8 identities enrolled (2 held out), 2 probes each and 5 per stranger, less failures.
    assert_eq!(palms + v["failures_to_enroll"].as_u64().unwrap(), 8, "{v}");
    assert_eq!(v["strangers"].as_u64().unwrap(), 2);
    let probes = v["enrolled_probes"].as_u64().unwrap() + v["stranger_probes"].as_u64().unwrap();
    assert!(probes + ftx >= 24 && probes > 0, "{v}");
    let sizes = v["sizes"].as_array().unwrap();
    assert_eq!(sizes.len(), 2);
    assert_eq!(sizes[0]["n"].as_u64().unwrap(), palms);
    assert_eq!(sizes[0]["distractors"].as_u64().unwrap(), 0);
    assert_eq!(sizes[1]["n"].as_u64().unwrap(), 12);
    assert_eq!(sizes[1]["distractors"].as_u64().unwrap(), 12 - palms);
    for s in sizes {
        // Easy hands: the index shortlists every palm exhaustive search finds first.
        let r8 = s["recall_at"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["k"] == 8)
            .unwrap();
        assert!(r8["exhaustive"].as_f64().unwrap() >= 0.9, "{s}");
        assert!(
            r8["index"].as_f64().unwrap() >= r8["exhaustive"].as_f64().unwrap() - 1e-9,
            "{s}"
        );
        assert!(s["rank1_index"].as_f64().unwrap() >= 0.9, "{s}");
    }
}
