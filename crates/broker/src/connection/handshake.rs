//! Before the AMQP connection: the protocol headers and SASL. The SASL frames are read and written
//! here directly, outside the main loop, which starts only once the AMQP header is agreed.

use anyhow::{Context, anyhow, bail};
use fe2o3_amqp_types::primitives::Symbol;
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslMechanisms, SaslOutcome};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use crate::auth::{self, Grants};

use super::{MAX_FRAME_SIZE, frame};

const PROTOCOL_AMQP: u8 = 0;
const PROTOCOL_TLS: u8 = 2;
const PROTOCOL_SASL: u8 = 3;
const FRAME_TYPE_SASL: u8 = 1;

/// Reads the protocol header(s), doing SASL when asked; returns what the connection may use
/// before it puts any token (everything after SASL PLAIN with the key, else nothing).
pub(super) async fn handshake(
    reader: &mut (impl AsyncReadExt + Unpin),
    writer: &mut OwnedWriteHalf,
    key: &auth::SharedAccessKey,
) -> anyhow::Result<Grants> {
    let mut grants = Grants::default();
    let mut header = read_header(reader).await?;
    if header == PROTOCOL_TLS {
        writer.write_all(&protocol_header(PROTOCOL_SASL)).await?;
        bail!("the client asked for TLS, which this broker does not offer");
    }
    if header == PROTOCOL_SASL {
        writer.write_all(&protocol_header(PROTOCOL_SASL)).await?;
        let mechanisms = SaslMechanisms {
            sasl_server_mechanisms: auth::SASL_MECHANISMS.map(Symbol::from).to_vec().into(),
        };
        writer.write_all(&frame(FRAME_TYPE_SASL, 0, &mechanisms, &[])?).await?;
        let init_frame = read_raw_frame(reader).await?;
        let body = frame_body(&init_frame)?;
        let init: SaslInit = serde_amqp::from_slice(body).context("decoding sasl-init")?;
        let mechanism = init.mechanism.as_str();
        let code = match mechanism {
            "ANONYMOUS" | "MSSBCBS" => SaslCode::Ok,
            "PLAIN"
                if key.matches_plain(
                    init.initial_response
                        .as_deref()
                        .map_or(&[][..], |response| response.as_slice()),
                ) =>
            {
                grants = Grants::namespace();
                SaslCode::Ok
            }
            _ => SaslCode::Auth,
        };
        let outcome = SaslOutcome {
            code: code.clone(),
            additional_data: None,
        };
        writer.write_all(&frame(FRAME_TYPE_SASL, 0, &outcome, &[])?).await?;
        if code != SaslCode::Ok {
            bail!("SASL `{mechanism}` failed: unknown mechanism or wrong credentials");
        }
        header = read_header(reader).await?;
    }
    if header != PROTOCOL_AMQP {
        writer.write_all(&protocol_header(PROTOCOL_AMQP)).await?;
        bail!("unsupported protocol id {header}");
    }
    writer.write_all(&protocol_header(PROTOCOL_AMQP)).await?;
    Ok(grants)
}

fn protocol_header(id: u8) -> [u8; 8] {
    [b'A', b'M', b'Q', b'P', id, 1, 0, 0]
}

async fn read_header(reader: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<u8> {
    let mut header = [0u8; 8];
    reader.read_exact(&mut header).await?;
    if &header[..4] != b"AMQP" || header[5..] != [1, 0, 0] {
        bail!("not an AMQP 1.0 protocol header: {header:?}");
    }
    Ok(header[4])
}

/// Reads one frame, length included, outside the main loop (during SASL).
async fn read_raw_frame(reader: &mut (impl AsyncReadExt + Unpin)) -> anyhow::Result<Vec<u8>> {
    let size = reader.read_u32().await? as usize;
    if !(8..=MAX_FRAME_SIZE as usize).contains(&size) {
        bail!("bad frame size {size}");
    }
    let mut frame = vec![0u8; size];
    frame[..4].copy_from_slice(&(size as u32).to_be_bytes());
    reader.read_exact(&mut frame[4..]).await?;
    Ok(frame)
}

fn frame_body(frame: &[u8]) -> anyhow::Result<&[u8]> {
    let offset = usize::from(frame[4]) * 4;
    frame.get(offset..).ok_or_else(|| anyhow!("bad data offset"))
}
