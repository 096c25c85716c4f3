fn main() {
    println!("palmline-kiosk: not built yet");
}
