//! The README's code examples are documentation examples in the crate, which `cargo test`
//! runs: the API tour is `densegrad::mnist`'s and the first example is the crate's. These
//! tests fail when a README copy and its doctest drift apart.

/// Returns the lines of the first fenced code block after `heading` in the README.
fn readme_block(readme: &str, heading: &str) -> Vec<String> {
    let section = &readme[readme.find(heading).expect("the README has the heading")..];
    let body = section
        .split_once("```rust\n")
        .expect("the section has a rust code block")
        .1;
    let code = body.split_once("```").expect("the code block ends").0;
    code.lines().map(str::to_owned).collect()
}

/// Returns the lines of the first code block in the `//!` docs of `source`, without the
/// lines that rustdoc hides (those starting with `# `).
fn module_doc_block(source: &str) -> Vec<String> {
    let docs: Vec<&str> = source
        .lines()
        .map_while(|line| line.strip_prefix("//!"))
        .map(|line| line.strip_prefix(' ').unwrap_or(line))
        .collect();
    let start = docs
        .iter()
        .position(|line| line.starts_with("```"))
        .expect("the module docs have a code block")
        + 1;
    let len = docs[start..]
        .iter()
        .position(|line| line.starts_with("```"))
        .expect("the code block ends");
    docs[start..start + len]
        .iter()
        .filter(|line| !line.starts_with("# "))
        .map(|line| (*line).to_owned())
        .collect()
}

#[test]
fn readme_tour_matches_doctest() {
    let readme = include_str!("../README.md");
    let module = include_str!("../src/mnist.rs");
    let tour = readme_block(readme, "## API tour");
    let doctest = module_doc_block(module);
    assert!(tour.len() > 10, "the tour has {} lines", tour.len());
    for (i, (a, b)) in tour.iter().zip(&doctest).enumerate() {
        assert_eq!(a, b, "line {} of the README tour", i + 1);
    }
    assert_eq!(
        tour.len(),
        doctest.len(),
        "lines in the README tour and the doctest"
    );
}

#[test]
fn readme_first_example_matches_crate_doctest() {
    let readme = include_str!("../README.md");
    let crate_docs = include_str!("../src/lib.rs");
    let example = readme_block(readme, "## Using it");
    let doctest = module_doc_block(crate_docs);
    assert!(
        example.len() > 10,
        "the example has {} lines",
        example.len()
    );
    assert_eq!(example, doctest);
}
