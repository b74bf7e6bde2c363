//! No import cycle between the crate's modules: among the top-level modules of `src/`, and among
//! the sibling modules of each folder (`pipeline/attempt.rs` and `pipeline/poll.rs`). A module
//! depends on another when its code (not its comments or tests) names it through `crate::` or
//! `super::`. Run alone with `cargo test --test module_graph`; a cycle fails with its path.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Module path (`pipeline::attempt`) to its source, for every file of `src/` outside test-only
/// modules.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                walk(&path, &[prefix, &[stem]].concat(), out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = if stem == "mod" || stem == "lib" { prefix.to_vec() } else { [prefix, &[stem]].concat() };
                out.insert(name.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &[], &mut out);
    // Modules declared `#[cfg(test)] mod name;` are test code.
    let test_only: Vec<String> = out
        .iter()
        .flat_map(|(module, text)| {
            let lines: Vec<&str> = text.lines().collect();
            lines
                .windows(2)
                .filter(|pair| pair[0].trim() == "#[cfg(test)]" && pair[1].trim().starts_with("mod ") && pair[1].trim().ends_with(';'))
                .map(|pair| {
                    let name = pair[1].trim().trim_start_matches("mod ").trim_end_matches(';');
                    if module.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{module}::{name}")
                    }
                })
                .collect::<Vec<_>>()
        })
        .collect();
    out.retain(|module, _| !test_only.contains(module));
    out
}

/// `text` without comments and without its `#[cfg(test)] mod tests { … }` block.
fn code(text: &str) -> String {
    let text = text.split("#[cfg(test)]\nmod tests").next().unwrap();
    text.lines().map(|line| line.split("//").next().unwrap()).collect::<Vec<_>>().join("\n")
}

/// The identifiers that follow each occurrence of `prefix` in `text` (`crate::config::X` → `config`).
fn names_after<'t>(text: &'t str, prefix: &str) -> Vec<&'t str> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            let rest = &text[at + prefix.len()..];
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// Module to the modules it depends on.
fn edges(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, text) in modules {
        let code = code(text);
        let parent = module.rsplit_once("::").map_or("", |(parent, _)| parent);
        let mut targets = BTreeSet::new();
        // `crate::pipeline::attempt::X` names `pipeline::attempt` when that is a module.
        for (at, _) in code.match_indices("crate::") {
            let path: Vec<&str> = code[at + 7..].split("::").map(|p| p.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).next().unwrap()).collect();
            let mut target = String::new();
            for part in path.iter().take_while(|p| !p.is_empty()) {
                let next = if target.is_empty() { (*part).to_owned() } else { format!("{target}::{part}") };
                if !modules.contains_key(&next) {
                    break;
                }
                target = next;
            }
            if !target.is_empty() {
                targets.insert(target);
            }
        }
        for name in names_after(&code, "super::") {
            let sibling = if parent.is_empty() { name.to_owned() } else { format!("{parent}::{name}") };
            if modules.contains_key(&sibling) {
                targets.insert(sibling);
            }
        }
        targets.remove(module);
        edges.insert(module.clone(), targets);
    }
    edges
}

/// A cycle in `graph`, as the path that closes it, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(node: &str, graph: &BTreeMap<String, BTreeSet<String>>, path: &mut Vec<String>, done: &mut BTreeSet<String>) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            return Some([&path[start..], &[node.to_owned()]].concat());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_two_modules_depend_on_each_other() {
    let modules = modules();
    assert!(modules.contains_key("pipeline::attempt") && modules.contains_key("config"), "the walk found the crate");
    let edges = edges(&modules);
    let top = |module: &str| module.split("::").next().unwrap().to_owned();
    let mut top_level: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut siblings: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, targets) in &edges {
        for to in targets {
            if top(from) != top(to) && !from.is_empty() {
                top_level.entry(top(from)).or_default().insert(top(to));
            }
            let parent = |m: &str| m.rsplit_once("::").map(|(p, _)| p.to_owned());
            if from.contains("::") && parent(from) == parent(to) {
                siblings.entry(from.clone()).or_default().insert(to.clone());
            }
        }
    }
    assert_eq!(find_cycle(&top_level), None, "top-level modules in a cycle");
    assert_eq!(find_cycle(&siblings), None, "sibling modules in a cycle");
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> =
        [("a", &["b"][..]), ("b", &["c"]), ("c", &["a"]), ("d", &[])].iter().map(|(n, t)| (n.to_string(), t.iter().map(|s| s.to_string()).collect())).collect();
    assert_eq!(find_cycle(&graph), Some(vec!["a".into(), "b".into(), "c".into(), "a".into()]));
}
