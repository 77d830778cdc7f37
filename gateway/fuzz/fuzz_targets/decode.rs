//! Fuzz the gateway's decoders from raw socket bytes: the frame reader (magic, version,
//! length limit, CRC32C), then every frame's payload as a request of its kind and as a reply,
//! and the reply bodies. None may panic, hang or allocate beyond the limits; a request that
//! decodes must re-encode to the same header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tally_client::protocol::{
    decode_create_reply, decode_refusal, decode_registered, decode_reply, decode_request,
    decode_statement_reply, encode_request_header,
};
use tally_wire::read_frame;

fn payload(kind: u8, payload: &[u8]) {
    if let Ok((header, _)) = decode_request(kind, payload) {
        let mut again = Vec::new();
        encode_request_header(&header, payload.len() - 64, &mut again);
        assert_eq!(&again[..], &payload[..64]);
    }
    if let Ok((_, body)) = decode_reply(payload) {
        let _ = decode_registered(body);
        let _ = decode_create_reply(body);
        let _ = decode_statement_reply(body);
        let _ = decode_refusal(body);
    }
}

fuzz_target!(|data: &[u8]| {
    // The bytes as a stream of frames, as the node reads them (with the node's 16 MiB limit).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let mut stream = data;
        while let Ok(Some(frame)) = read_frame(&mut stream, 16 << 20).await {
            payload(frame.kind, &frame.payload);
        }
    });
    // And the bytes as a payload behind an intact frame, of the kind their first byte names.
    if let Some((kind, rest)) = data.split_first() {
        payload(*kind, rest);
    }
});
