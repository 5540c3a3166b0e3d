//! `sagahost new`: writes a ready partner project in Rust, TypeScript or Python.
//!
//! A project holds a handler, the WIT world the host implements (`wit/`), the guest SDK of its
//! language (`sdk/`), a `partner.toml` with fixtures that pass as written, and a README with
//! the build and test commands. The SDK and the WIT are copied from this binary rather than
//! fetched from a package registry: they are the ones this host was built with, so the project
//! builds against exactly the contract the host checks, and nothing needs publishing first.
//! The SDK keeps the layout it has in the sagahost repository (two folders below the project,
//! beside `wit/`), so its references to `../../wit` hold in both places.
//!
//! The handler is the same in every language (POST the Dataverse row to `{api-url}/records`,
//! complete, retry or dead-letter on the answer), so one set of fixtures serves all three.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// The language of a new partner project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Typescript,
    Python,
}

/// A project `create` wrote.
#[derive(Debug)]
pub struct Project {
    /// The project's folder.
    pub dir: PathBuf,
    /// The command that builds the component, run in `dir`.
    pub build: &'static str,
    /// The built component, relative to `dir`.
    pub component: String,
    /// Every file written, relative to `dir`.
    pub files: Vec<String>,
}

/// One file of a template: its path in the project and its text, with `{{name}}`-style
/// placeholders.
type Template = (&'static str, &'static str);

const WIT: [Template; 2] = [
    ("wit/world.wit", include_str!("../../../wit/world.wit")),
    ("wit/types.wit", include_str!("../../../wit/types.wit")),
];

const COMMON: [Template; 4] = [
    ("fixtures/partner.toml", include_str!("templates/common/partner.toml")),
    (
        "fixtures/created/fixture.toml",
        include_str!("templates/common/created.toml"),
    ),
    (
        "fixtures/throttled/fixture.toml",
        include_str!("templates/common/throttled.toml"),
    ),
    (
        "messages/contact-create.json",
        include_str!("../../../guest-examples/messages/contact-create.json"),
    ),
];

/// What the fixtures expect, the same for every language.
const EXPECTED: [Template; 2] = [
    (
        "fixtures/created/expected.json",
        include_str!("templates/common/created.json"),
    ),
    (
        "fixtures/throttled/expected.json",
        include_str!("templates/common/throttled.json"),
    ),
];

const RUST: [Template; 7] = [
    ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
    ("src/lib.rs", include_str!("templates/rust/lib.rs")),
    (".cargo/config.toml", include_str!("templates/rust/cargo-config.toml")),
    (
        "rust-toolchain.toml",
        include_str!("templates/rust/rust-toolchain.toml"),
    ),
    (".gitignore", include_str!("templates/rust/gitignore")),
    (
        "sdk/sagahost-partner/Cargo.toml",
        include_str!("templates/rust/sdk-Cargo.toml"),
    ),
    (
        "sdk/sagahost-partner/src/lib.rs",
        include_str!("../../../guest-examples/partner-sdk/src/lib.rs"),
    ),
];

const PYTHON: [Template; 9] = [
    ("app.py", include_str!("templates/python/app.py")),
    ("build", include_str!("templates/python/build")),
    (".gitignore", include_str!("templates/python/gitignore")),
    (
        "sdk/python/requirements-build.txt",
        include_str!("../../../guest-sdks/python/requirements-build.txt"),
    ),
    (
        "sdk/python/src/sagahost_partner/__init__.py",
        include_str!("../../../guest-sdks/python/src/sagahost_partner/__init__.py"),
    ),
    (
        "sdk/python/src/sagahost_partner/boundary.py",
        include_str!("../../../guest-sdks/python/src/sagahost_partner/boundary.py"),
    ),
    (
        "sdk/python/src/sagahost_partner/host.py",
        include_str!("../../../guest-sdks/python/src/sagahost_partner/host.py"),
    ),
    (
        "sdk/python/src/sagahost_partner/models.py",
        include_str!("../../../guest-sdks/python/src/sagahost_partner/models.py"),
    ),
    (
        "sdk/python/src/sagahost_partner/plans.py",
        include_str!("../../../guest-sdks/python/src/sagahost_partner/plans.py"),
    ),
];

const TYPESCRIPT: [Template; 18] = [
    ("src/index.ts", include_str!("templates/typescript/index.ts")),
    ("build.mjs", include_str!("templates/typescript/build.mjs")),
    ("tsconfig.json", include_str!("templates/typescript/tsconfig.json")),
    (".gitignore", include_str!("templates/typescript/gitignore")),
    (
        "sdk/typescript/tsconfig.base.json",
        include_str!("../../../guest-sdks/typescript/tsconfig.base.json"),
    ),
    (
        "sdk/typescript/tools/jco-preopens.mjs",
        include_str!("../../../guest-sdks/typescript/tools/jco-preopens.mjs"),
    ),
    (
        "sdk/typescript/src/context.ts",
        include_str!("../../../guest-sdks/typescript/src/context.ts"),
    ),
    (
        "sdk/typescript/src/errors.ts",
        include_str!("../../../guest-sdks/typescript/src/errors.ts"),
    ),
    (
        "sdk/typescript/src/handler.ts",
        include_str!("../../../guest-sdks/typescript/src/handler.ts"),
    ),
    (
        "sdk/typescript/src/host.ts",
        include_str!("../../../guest-sdks/typescript/src/host.ts"),
    ),
    (
        "sdk/typescript/src/index.ts",
        include_str!("../../../guest-sdks/typescript/src/index.ts"),
    ),
    (
        "sdk/typescript/src/json.ts",
        include_str!("../../../guest-sdks/typescript/src/json.ts"),
    ),
    (
        "sdk/typescript/src/model.ts",
        include_str!("../../../guest-sdks/typescript/src/model.ts"),
    ),
    (
        "sdk/typescript/src/plan.ts",
        include_str!("../../../guest-sdks/typescript/src/plan.ts"),
    ),
    (
        "sdk/typescript/src/request.ts",
        include_str!("../../../guest-sdks/typescript/src/request.ts"),
    ),
    (
        "sdk/typescript/src/result.ts",
        include_str!("../../../guest-sdks/typescript/src/result.ts"),
    ),
    (
        "sdk/typescript/src/runtime.d.ts",
        include_str!("../../../guest-sdks/typescript/src/runtime.d.ts"),
    ),
    (
        "sdk/typescript/src/text.ts",
        include_str!("../../../guest-sdks/typescript/src/text.ts"),
    ),
];

/// The TypeScript SDK's manifest and lock file: a project gets the same pinned tools.
const TYPESCRIPT_PACKAGE: &str = include_str!("../../../guest-sdks/typescript/package.json");
const TYPESCRIPT_LOCK: &str = include_str!("../../../guest-sdks/typescript/package-lock.json");

/// Files written executable: the build scripts.
const EXECUTABLE: [&str; 1] = ["build"];

impl Language {
    fn templates(self) -> &'static [Template] {
        match self {
            Language::Rust => &RUST,
            Language::Typescript => &TYPESCRIPT,
            Language::Python => &PYTHON,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::Typescript => "TypeScript",
            Language::Python => "Python",
        }
    }

    fn build(self) -> &'static str {
        match self {
            Language::Rust => "cargo build --release",
            Language::Typescript => "npm run build",
            Language::Python => "./build",
        }
    }

    fn component(self, name: &str) -> String {
        match self {
            Language::Rust => format!("target/wasm32-wasip2/release/{}.wasm", name.replace('-', "_")),
            Language::Typescript | Language::Python => format!("dist/{name}.wasm"),
        }
    }
}

/// Checks that `name` can name a partner, a crate and a package: lowercase ASCII letters,
/// digits and single hyphens, starting with a letter.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    anyhow::ensure!(
        valid,
        "`{name}` cannot name a partner: use lowercase letters, digits and single hyphens, \
         starting with a letter (at most 64), e.g. `crm-sync`"
    );
    Ok(())
}

/// Writes the project `name` in `language` into `dir`, which must not exist or be empty.
pub fn create(language: Language, name: &str, dir: &Path) -> anyhow::Result<Project> {
    check_name(name)?;
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        anyhow::ensure!(
            entries.next().is_none(),
            "{} already exists and is not empty: pick another name or folder",
            dir.display()
        );
    }
    let component = language.component(name);
    let readme = readme(language, name, &component);
    let templates = WIT
        .iter()
        .chain(&COMMON)
        .chain(&EXPECTED)
        .chain(language.templates())
        .map(|(path, text)| (*path, fill(text, name)))
        .chain([("README.md", readme)])
        .chain(match language {
            Language::Typescript => typescript_manifests(name)?.to_vec(),
            _ => Vec::new(),
        });
    let mut files = Vec::new();
    for (path, text) in templates {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
        if EXECUTABLE.contains(&path) {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("making {} executable", target.display()))?;
        }
        files.push(path.to_string());
    }
    Ok(Project {
        dir: dir.to_path_buf(),
        build: language.build(),
        component,
        files,
    })
}

/// The project's `package.json` (the SDK's pinned tools, and `npm run build`) and its
/// `package-lock.json` (the SDK's, renamed), so `npm ci` installs exactly what the SDK was
/// built and tested with.
fn typescript_manifests(name: &str) -> anyhow::Result<[(&'static str, String); 2]> {
    let sdk: serde_json::Value = serde_json::from_str(TYPESCRIPT_PACKAGE).context("the SDK's package.json")?;
    let manifest = serde_json::json!({
        "name": name,
        "version": "0.1.0",
        "description": format!("sagahost partner component {name}"),
        "private": true,
        "type": "module",
        "scripts": { "build": "node build.mjs" },
        "devDependencies": sdk["devDependencies"],
    });
    let mut lock: serde_json::Value = serde_json::from_str(TYPESCRIPT_LOCK).context("the SDK's package-lock.json")?;
    lock["name"] = name.into();
    lock["packages"][""]["name"] = name.into();
    Ok([
        ("package.json", serde_json::to_string_pretty(&manifest)? + "\n"),
        ("package-lock.json", serde_json::to_string_pretty(&lock)? + "\n"),
    ])
}

/// Replaces the placeholders of a template.
fn fill(text: &str, name: &str) -> String {
    text.replace("{{name}}", name)
        .replace("{{rust_toolchain}}", rust_toolchain())
}

/// The toolchain the host and its Rust SDK are built and tested with: the channel of the
/// repository's `rust-toolchain.toml`.
fn rust_toolchain() -> &'static str {
    include_str!("../../../rust-toolchain.toml")
        .lines()
        .find_map(|line| line.strip_prefix("channel = "))
        .map_or("stable", |channel| channel.trim_matches('"'))
}

fn readme(language: Language, name: &str, component: &str) -> String {
    let title = language.title();
    let build = language.build();
    format!(
        "# {name}\n\n\
         A sagahost partner component in {title}, written by `sagahost new`.\n\n\
         It POSTs each Dataverse row it receives to `{{api-url}}/records` with the bearer token \
         of the secret `api-token`, and completes on a 2xx answer, retries on 408, 429, 5xx or a \
         network failure (after `Retry-After` when the API sends one), and dead-letters any \
         other answer as `Rejected`. Change the handler to fit your partner system.\n\n\
         ## Build and test\n\n\
         ```sh\n{build}\nsagahost test {component} fixtures\n```\n\n\
         `fixtures/` holds `partner.toml` (the partner's config, as in the host's \
         `[partners.{name}]`) and one folder per case: the input message and the recorded HTTP \
         answers (`fixture.toml`), and what the component must do (`expected.json`). After \
         changing the handler on purpose, `sagahost test --update {component} fixtures` \
         rewrites the expectations; review the diff.\n\n\
         ## Run it in the host\n\n\
         ```toml\n[partners.{name}]\ncomponent = \"{component}\"\nqueue = \"{name}\"\n\
         config = {{ api-url = \"https://api.example.com\" }}\n\
         secrets = {{ api-token = {{ env = \"API_TOKEN\" }} }}\n\
         outbound = {{ allow = [\"https://api.example.com\"] }}\n```\n\n\
         ## What is where\n\n\
         - `wit/`: the WIT world the host implements (`sagahost:partner/partner`).\n\
         - `sdk/`: the sagahost guest SDK for {title}, matching that world.\n\
         - `messages/`: a Dataverse message the fixtures send.\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_cannot_name_a_partner_are_refused_with_an_example() {
        for name in ["", "Crm", "1crm", "crm_sync", "crm-", "crm--sync", "crm sync", "../crm"] {
            let err = check_name(name).unwrap_err().to_string();
            assert!(err.contains("e.g. `crm-sync`"), "{name}: {err}");
        }
        check_name("crm-sync2").unwrap();
    }

    #[test]
    fn a_project_is_written_once_and_never_over_existing_files() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("crm");
        let project = create(Language::Rust, "crm", &target).unwrap();
        assert!(project.files.contains(&"src/lib.rs".to_string()));
        let manifest = std::fs::read_to_string(target.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("name = \"crm\""), "{manifest}");
        let err = create(Language::Rust, "crm", &target).unwrap_err().to_string();
        assert!(err.contains("already exists and is not empty"), "{err}");
    }

    /// Every file of each SDK is in its language's template, so a file added to an SDK
    /// cannot be left out of new projects.
    #[test]
    fn the_templates_carry_every_file_of_each_sdk() {
        let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        for (language, sdk, prefix) in [
            (
                Language::Rust,
                "guest-examples/partner-sdk/src",
                "sdk/sagahost-partner/src",
            ),
            (
                Language::Python,
                "guest-sdks/python/src/sagahost_partner",
                "sdk/python/src/sagahost_partner",
            ),
            (Language::Typescript, "guest-sdks/typescript/src", "sdk/typescript/src"),
        ] {
            for entry in std::fs::read_dir(workspace.join(sdk)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    let name = format!("{prefix}/{}", path.file_name().unwrap().to_string_lossy());
                    assert!(
                        language.templates().iter().any(|(file, _)| *file == name),
                        "{name} is not in the {language:?} template"
                    );
                }
            }
        }
    }
}
