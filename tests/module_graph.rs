//! No module of the library uses a module that uses it back.
//!
//! Modules that depend on each other in a circle cannot be read, tested or replaced one at a
//! time, and the data flow (subscription → main loop → tagging → store → announce) stops
//! being visible in the tree. This test reads `src/` as text and fails, naming the circle, as
//! soon as one appears. It resolves what a path names the way a reader would: the longest
//! prefix that is a module file, followed through `pub use` re-exports, so that importing
//! `crate::tagging::Tag` from `tagging/lifters` counts as using `tagging/tag.rs`, not the
//! `tagging` facade. Unit-test modules (`#[cfg(test)] mod tests`) are left out: a test may
//! reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A module's path inside the crate, e.g. `["daemon", "main_loop"]`; the crate root is `[]`.
type ModPath = Vec<String>;

struct Module {
    file: PathBuf,
    /// Every path the module's code names, made absolute.
    uses: Vec<ModPath>,
    /// `pub use` re-exports: exported name → absolute path of what it names.
    exports: BTreeMap<String, ModPath>,
}

/// Reads every module file under `src` (`lib.rs` is the root; `main.rs` is another crate).
fn read_crate(src: &Path) -> BTreeMap<ModPath, Module> {
    let mut files = Vec::new();
    collect_rs_files(src, &mut files);
    let mut modules = BTreeMap::new();
    let paths: Vec<(ModPath, PathBuf)> = files
        .into_iter()
        .filter_map(|file| Some((module_path(src, &file)?, file)))
        .collect();
    let known: BTreeSet<ModPath> = paths.iter().map(|(path, _)| path.clone()).collect();
    for (path, file) in paths {
        let text = fs::read_to_string(&file).unwrap();
        let code = without_tests_and_comments(&text);
        let children: Vec<String> = known
            .iter()
            .filter(|other| other.len() == path.len() + 1 && other.starts_with(&path))
            .map(|other| other.last().unwrap().clone())
            .collect();
        let mut uses = Vec::new();
        let mut exports = BTreeMap::new();
        for statement in use_statements(&code) {
            let public = statement.starts_with("pub");
            let body = statement.split_once("use ").unwrap().1;
            for (flat, alias) in expand(body.trim().trim_end_matches(';')) {
                let Some(absolute) = absolute(&path, &flat, &children) else {
                    continue;
                };
                if public {
                    exports.insert(alias, absolute.clone());
                }
                uses.push(absolute);
            }
        }
        for inline in inline_paths(&code, &children) {
            if let Some(absolute) = absolute(&path, &inline, &children) {
                uses.push(absolute);
            }
        }
        modules.insert(
            path,
            Module {
                file,
                uses,
                exports,
            },
        );
    }
    modules
}

fn collect_rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rs_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_path(src: &Path, file: &Path) -> Option<ModPath> {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop()?;
    match last.as_str() {
        "main.rs" if parts.is_empty() => None,
        "lib.rs" if parts.is_empty() => Some(parts),
        "mod.rs" => Some(parts),
        name => {
            parts.push(name.trim_end_matches(".rs").to_owned());
            Some(parts)
        }
    }
}

/// The code without line comments and without the unit-test module that ends most files.
fn without_tests_and_comments(text: &str) -> String {
    let end = [
        "#[cfg(test)]\nmod tests",
        "#[cfg(test)]\npub(crate) mod tests",
    ]
    .iter()
    .filter_map(|start| text.find(start))
    .min()
    .unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each `use …;` / `pub use …;` / `pub(crate) use …;` statement, joined onto one line.
fn use_statements(code: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current: Option<String> = None;
    for line in code.lines() {
        let trimmed = line.trim();
        if current.is_none()
            && (trimmed.starts_with("use ")
                || trimmed.starts_with("pub use ")
                || trimmed.starts_with("pub(crate) use "))
        {
            current = Some(String::new());
        }
        if let Some(statement) = &mut current {
            statement.push_str(trimmed);
            statement.push(' ');
            if trimmed.ends_with(';') {
                statements.push(current.take().unwrap());
            }
        }
    }
    statements
}

/// `a::{b, c::{d, e as f}}` → `a::b`, `a::c::d`, `a::c::e` (named `f`).
fn expand(tree: &str) -> Vec<(String, String)> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        let (path, alias) = match tree.split_once(" as ") {
            Some((path, alias)) => (path.trim(), alias.trim()),
            None => (tree, tree.rsplit("::").next().unwrap_or(tree)),
        };
        return vec![(path.to_owned(), alias.to_owned())];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap()];
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.extend(expand_item(prefix, &inner[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.extend(expand_item(prefix, &inner[start..]));
    out
}

fn expand_item(prefix: &str, item: &str) -> Vec<(String, String)> {
    let item = item.trim();
    if item.is_empty() {
        return Vec::new();
    }
    if item == "self" {
        let alias = prefix.rsplit("::").next().unwrap_or(prefix);
        return vec![(prefix.to_owned(), alias.to_owned())];
    }
    expand(&format!("{prefix}::{item}"))
}

/// Paths named in code outside `use`: `crate::a::b`, `super::x`, and, in a module with
/// children, `child::item`.
fn inline_paths(code: &str, children: &[String]) -> Vec<String> {
    let mut roots: Vec<&str> = vec!["crate", "super"];
    roots.extend(children.iter().map(String::as_str));
    let mut out = Vec::new();
    for line in code.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("use ") || trimmed.starts_with("pub use ") {
            continue;
        }
        for root in &roots {
            let needle = format!("{root}::");
            let mut from = 0;
            while let Some(at) = line[from..].find(&needle) {
                let start = from + at;
                from = start + needle.len();
                let before = line[..start].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                    continue;
                }
                let rest: String = line[start..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                    .collect();
                out.push(rest.trim_end_matches(':').to_owned());
            }
        }
    }
    out
}

/// Makes `path`, as written in module `here`, absolute; `None` for other crates and `std`.
fn absolute(here: &ModPath, path: &str, children: &[String]) -> Option<ModPath> {
    let mut segments = path.split("::").map(str::to_owned);
    let first = segments.next()?;
    let mut base: ModPath = match first.as_str() {
        "crate" => Vec::new(),
        "self" => here.clone(),
        "super" => {
            let mut parent = here.clone();
            parent.pop();
            parent
        }
        child if children.iter().any(|c| c == child) => {
            let mut base = here.clone();
            base.push(child.to_owned());
            base
        }
        _ => return None,
    };
    for segment in segments {
        if segment == "super" {
            base.pop();
        } else {
            base.push(segment);
        }
    }
    Some(base)
}

/// The module file a path lands in: its longest module prefix, followed through re-exports.
fn target(modules: &BTreeMap<ModPath, Module>, path: &ModPath) -> ModPath {
    let mut path = path.clone();
    for _ in 0..16 {
        let module = (0..=path.len())
            .rev()
            .map(|n| path[..n].to_vec())
            .find(|prefix| modules.contains_key(prefix))
            .unwrap();
        let Some(item) = path.get(module.len()) else {
            return module;
        };
        match modules[&module].exports.get(item) {
            Some(exported) if exported != &path => {
                let mut next = exported.clone();
                next.extend(path[module.len() + 1..].iter().cloned());
                path = next;
            }
            _ => return module,
        }
    }
    panic!("re-exports of {path:?} go round in a circle")
}

/// Module → the other modules it uses.
fn graph(modules: &BTreeMap<ModPath, Module>) -> BTreeMap<ModPath, BTreeSet<ModPath>> {
    modules
        .iter()
        .map(|(path, module)| {
            let used = module
                .uses
                .iter()
                .map(|used| target(modules, used))
                .filter(|used| used != path)
                .collect();
            (path.clone(), used)
        })
        .collect()
}

/// Every circle, as the modules along it, each found once from its smallest member.
fn circles(graph: &BTreeMap<ModPath, BTreeSet<ModPath>>) -> Vec<Vec<ModPath>> {
    let mut found = Vec::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    found.push(trail.clone());
                } else if next > start && seen.insert(next.clone()) {
                    let mut longer = trail.clone();
                    longer.push(next.clone());
                    stack.push((next.clone(), longer));
                }
            }
        }
    }
    found
}

fn describe(modules: &BTreeMap<ModPath, Module>, circle: &[ModPath]) -> String {
    let mut names: Vec<String> = circle
        .iter()
        .map(|m| modules[m].file.display().to_string())
        .collect();
    names.push(names[0].clone());
    names.join(" → ")
}

#[test]
fn no_module_uses_a_module_that_uses_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = read_crate(&src);
    assert!(modules.len() > 20, "read only {} modules", modules.len());
    let circles = circles(&graph(&modules));
    let described: Vec<String> = circles.iter().map(|c| describe(&modules, c)).collect();
    assert!(
        described.is_empty(),
        "modules in a circle:\n{}",
        described.join("\n")
    );
}

/// The check sees a circle through a re-export, an inline path and `super`, and none where
/// a child only uses what its parent re-exports from a sibling.
#[test]
fn the_check_finds_circles_it_is_meant_to_find() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    write("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n");
    write(
        "a/mod.rs",
        "mod inner;\nmod other;\npub use inner::{Thing, Other as Renamed};\n",
    );
    write(
        "a/inner.rs",
        "use super::other::Helper;\npub struct Thing;\npub struct Other;\n",
    );
    write("a/other.rs", "use crate::a::Thing;\npub struct Helper;\n");
    write(
        "b.rs",
        "use crate::a::Renamed;\nfn f() { crate::c::go(); }\n#[cfg(test)]\nmod tests {\n    use crate::c::Never;\n}\n",
    );
    write("c.rs", "pub fn go() {}\n");
    let modules = read_crate(dir.path());
    let graph = graph(&modules);
    let path = |p: &str| p.split('/').map(str::to_owned).collect::<ModPath>();
    assert_eq!(
        graph[&path("b")],
        BTreeSet::from([path("a/inner"), path("c")])
    );
    let circles = circles(&graph);
    assert_eq!(circles, vec![vec![path("a/inner"), path("a/other")]]);

    write("c.rs", "use crate::b;\npub fn go() {}\n");
    let modules = read_crate(dir.path());
    assert_eq!(circles_of(&modules), 2);
}

fn circles_of(modules: &BTreeMap<ModPath, Module>) -> usize {
    circles(&graph(modules)).len()
}
