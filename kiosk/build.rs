fn main() {
    // Debug info lets UI tests find elements by accessible label (also set in
    // .cargo/config.toml; set here too so a build from another directory keeps it).
    let config = slint_build::CompilerConfiguration::new()
        .with_style("fluent-dark".into())
        .with_debug_info(true);
    slint_build::compile_with_config("ui/app.slint", config).expect("compiling the Slint UI");
}
