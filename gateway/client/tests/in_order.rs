//! The in-order pipeline (`Client::create_in_order`) puts its requests on the wire in the
//! order it was given them, whatever the window: a node applies an in-order session's
//! creates in the order it reads them, so a later request written first would be applied
//! first (a file's posts before their pendings).

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tally_client::protocol::{
    decode_request_header, encode_create_reply, encode_registered, encode_reply, CreateReply,
    Registered, ReplyHeader, Role, Status, FLAG_IN_ORDER, KIND_REGISTER,
};
use tally_client::{Client, ClientConfig};
use tally_engine::limits::RECORD_BYTES;
use tally_wire::{read_frame, write_frame, Frame};
use tokio::net::TcpListener;

const CLUSTER: u128 = 7;

/// A node that registers anyone and answers every create with success, after writing down
/// the request number and flags of each create in the order it read them.
async fn recording_node(seen: Arc<Mutex<Vec<(u64, u16)>>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let (mut reader, mut writer) = stream.into_split();
                while let Ok(Some(frame)) = read_frame(&mut reader, 1 << 24).await {
                    let (header, _) = decode_request_header(&frame.payload).expect("header");
                    let body = if frame.kind == KIND_REGISTER {
                        encode_registered(&Registered {
                            session: 1,
                            session_idle_ms: 60_000,
                            role: Role::Submitter,
                            request_events_max: 8189,
                            in_flight_max: 16,
                        })
                    } else {
                        seen.lock()
                            .expect("lock")
                            .push((header.request_number, header.flags));
                        encode_create_reply(&CreateReply::default())
                    };
                    let reply = encode_reply(
                        &ReplyHeader {
                            status: Status::Ok,
                            cluster_id: CLUSTER,
                            client_id: header.client_id,
                            session: 1,
                            request_number: header.request_number,
                            commit_index: 1,
                        },
                        &body,
                    );
                    let frame = Frame {
                        kind: frame.kind + 1,
                        request_id: frame.request_id,
                        payload: Bytes::from(reply),
                    };
                    if write_frame(&mut writer, &frame).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Proves the window's requests reach the node in the order given, on a runtime with
/// several threads to race them (many rounds, so a race would show).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_order_requests_reach_the_node_in_order() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let addr = recording_node(Arc::clone(&seen)).await;
    let client = Client::connect(ClientConfig::new(vec![addr], CLUSTER, vec![1; 32]))
        .await
        .expect("client");
    let requests = 4_000;
    let (bodies, mut results) = client.create_in_order(tally_engine::Operation::CreateTransfers, 8);
    let sender = tokio::spawn(async move {
        for _ in 0..requests {
            let body = Bytes::from(vec![0u8; 4 * RECORD_BYTES]);
            bodies.send(body).await.expect("pipeline open");
        }
    });
    for _ in 0..requests {
        results
            .recv()
            .await
            .expect("a result per request")
            .expect("created");
    }
    sender.await.expect("sender");
    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), requests);
    assert!(seen.iter().all(|(_, flags)| flags & FLAG_IN_ORDER != 0));
    let out_of_order = seen
        .windows(2)
        .filter(|pair| pair[1].0 <= pair[0].0)
        .count();
    assert_eq!(
        out_of_order,
        0,
        "request numbers in the order the node read them: {:?}",
        &seen[..seen.len().min(64)]
    );
}
