//! The README's configuration examples stay valid: every ```json block that configures providers
//! must load.

use imagegate::config::Config;

#[test]
fn every_configuration_example_in_the_readme_loads() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let examples: Vec<&str> =
        readme.split("```json\n").skip(1).map(|rest| rest.split("\n```").next().unwrap()).filter(|block| block.contains("\"providers\"")).collect();
    assert!(examples.len() >= 2, "found {} examples", examples.len());
    for example in examples {
        if let Err(e) = Config::from_json(example) {
            panic!("{e}\n{example}");
        }
    }
}
