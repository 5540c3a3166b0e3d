//! The identity protocols end to end against loopback servers that the tests start: an
//! OAuth token endpoint, IMDS and App Service endpoints, a federated token exchange and a
//! Key Vault secrets endpoint. The servers answer what Entra ID, the managed identity
//! endpoints and Key Vault document, and record every request for the asserts.

mod cache;
mod certificate;
mod keyvault;
mod managed_identity;
mod oauth;
mod redaction;
mod server;
mod workload_identity;
