fn main() {
    println!("palmline-lab: not built yet");
}
