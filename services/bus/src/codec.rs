//! Protobuf encoding and decoding of bus payloads.

use bytes::Bytes;
use prost::Message;

/// A payload that is not a valid encoding of the expected message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("payload of {len} bytes is not a valid {message}: {reason}")]
pub struct DecodeError {
    /// The expected message type, e.g. `regionguard.v1.HealthEvent`.
    pub message: &'static str,
    /// Payload size.
    pub len: usize,
    /// The decoder's reason.
    pub reason: String,
}

/// Encodes a message.
pub fn encode<M: Message>(message: &M) -> Bytes {
    Bytes::from(message.encode_to_vec())
}

/// Decodes a message, naming the type in the error.
pub fn decode<M: Message + Default>(payload: &[u8]) -> Result<M, DecodeError> {
    M::decode(payload).map_err(|e| DecodeError {
        message: short_type_name::<M>(),
        len: payload.len(),
        reason: e.to_string(),
    })
}

fn short_type_name<M>() -> &'static str {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full)
}

#[cfg(test)]
mod tests {
    use rg_proto::v1::HealthEvent;

    use super::*;

    #[test]
    fn garbage_is_an_error_naming_the_type() {
        let err = decode::<HealthEvent>(&[0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert_eq!(err.message, "HealthEvent");
        assert_eq!(err.len, 4);
    }

    #[test]
    fn round_trip() {
        let e = HealthEvent {
            region: "us-east-1".into(),
            response_time_us: 1234,
            ..Default::default()
        };
        assert_eq!(decode::<HealthEvent>(&encode(&e)).unwrap(), e);
    }
}
