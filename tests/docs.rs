//! The documentation's configuration examples stay valid: every ```json block in the README and
//! in `docs/` that configures providers must load.

use imagegate::config::Config;

/// The ```json blocks of `text` that configure providers.
fn examples(text: &str) -> Vec<&str> {
    text.split("```json\n").skip(1).map(|rest| rest.split("\n```").next().unwrap()).filter(|block| block.contains("\"providers\"")).collect()
}

#[test]
fn every_configuration_example_in_the_docs_loads() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut pages = vec![format!("{root}/README.md")];
    pages.extend(std::fs::read_dir(format!("{root}/docs")).unwrap().map(|entry| entry.unwrap().path().display().to_string()).filter(|p| p.ends_with(".md")));
    let mut found = 0;
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        for example in examples(&text) {
            found += 1;
            if let Err(e) = Config::from_json(example) {
                panic!("{page}: {e}\n{example}");
            }
        }
    }
    assert!(found >= 3, "found {found} examples");
}
