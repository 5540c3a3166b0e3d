//! `sagahost publish`: pushes a partner component to an OCI registry as a wasm artifact
//! (config `application/vnd.wasm.config.v0+json`, one `application/wasm` layer), after
//! checking it exactly as `sagahost validate` does.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use oci_client::secrets::RegistryAuth;
use sagahost::component::source::is_loopback;
use sagahost::component::source::oci::{self, Annotations, OciReference};

/// `sagahost publish` options.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// The component (`.wasm`).
    component: PathBuf,
    /// Where to push it: oci://REGISTRY/REPO:TAG.
    reference: String,
    /// The artifact's title (`org.opencontainers.image.title`); the file's name by default.
    #[arg(long)]
    title: Option<String>,
    /// The component's version (`org.opencontainers.image.version`).
    #[arg(long)]
    version: Option<String>,
    /// Where the component's source code is (`org.opencontainers.image.source`).
    #[arg(long)]
    source: Option<String>,
    /// User name for the registry's basic authentication, with --password-env.
    #[arg(long, requires = "password_env")]
    username: Option<String>,
    /// Environment variable holding the password (with --username).
    #[arg(long, requires = "username")]
    password_env: Option<String>,
    /// Environment variable holding a bearer token for the registry.
    #[arg(long, conflicts_with = "username")]
    token_env: Option<String>,
    /// Speak plain HTTP to a registry that is not on loopback (loopback registries always
    /// get plain HTTP).
    #[arg(long)]
    insecure: bool,
}

/// Checks the component, pushes it and prints its digest.
pub async fn run(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let text = args.reference.strip_prefix("oci://").with_context(|| {
        format!(
            "`{}`: publish to an oci:// reference, e.g. oci://ghcr.io/contoso/mdm:1.4",
            args.reference
        )
    })?;
    let reference = OciReference::parse(text)?;
    let (wasm, info) = super::check_component(&args.component)?;
    let env = |flag: &str, var: &str| {
        std::env::var(var).with_context(|| format!("{flag}: environment variable {var} is not set"))
    };
    let auth = match (&args.username, &args.password_env, &args.token_env) {
        (Some(username), Some(var), _) => RegistryAuth::Basic(username.clone(), env("--password-env", var)?),
        (_, _, Some(var)) => RegistryAuth::Bearer(env("--token-env", var)?),
        _ => RegistryAuth::Anonymous,
    };
    let host = reference
        .registry()
        .rsplit_once(':')
        .map_or(reference.registry(), |(host, _)| host);
    if args.insecure && !is_loopback(host) {
        eprintln!(
            "warning: --insecure: pushing to {} over plain HTTP, where the component can be read and changed on the way",
            reference.registry()
        );
    }
    let title = args.title.unwrap_or_else(|| {
        args.component
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    });
    let annotations = Annotations {
        title,
        version: args.version,
        source: args.source,
    };
    let pushed = oci::push(&reference, wasm, &info, &annotations, &auth, args.insecure).await;
    let digest = pushed.map_err(|err| {
        let hint = if oci::refused_credentials(&err) {
            "; the registry wants credentials: --username with --password-env, or --token-env"
        } else {
            ""
        };
        anyhow::anyhow!("pushing {} to {reference}: {err:#}{hint}", args.component.display())
    })?;
    println!("pushed {reference}");
    println!("digest {digest}");
    println!("pinned {}", reference.at_digest(&digest));
    Ok(ExitCode::SUCCESS)
}
