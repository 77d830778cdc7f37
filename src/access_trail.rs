//! `tally client reads`: who read an account, from the access trail, checked here rather than
//! taken on the node's word: the trail's checkpoint must carry the cluster key's signature
//! (under the origin's `/reads` name), every read must be included in that checkpoint's tree,
//! and the reads must form the account's whole chain (each read names the previous read of
//! the account, down to the first), so a read left out or altered is caught.

use anyhow::{bail, Context};
use tally_client::access_trail::{AccessTrailReply, AccessTrailRequest};
use tally_client::proofs::LATEST;
use tally_client::Client;
use tally_engine::checkpoint::NoteVerifier;
use tally_engine::merkle::{leaf_hash, verify_inclusion};
use tally_engine::{
    ACCESS_LEAF_ACCOUNT_BYTES, ACCESS_LEAF_HEADER_BYTES, ACCESS_LEAF_VERSION, ACCESS_ORIGIN_SUFFIX,
    NO_PREVIOUS,
};

/// One read of the account, as its leaf says.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TrailRead {
    /// The read's leaf index in the access trail.
    pub index: u64,
    pub time_ns: u64,
    pub commit_index: u64,
    /// The request kind (docs/protocol.md) and its name.
    pub operation: u8,
    pub operation_name: &'static str,
    /// The credential: the first 16 bytes of its configured hash (hex) and its name.
    pub credential: String,
    pub name: String,
    /// Accounts the read touched, this one included.
    pub accounts: u32,
}

/// Every page of `account`'s reads against one access checkpoint, newest first.
pub async fn fetch_trail(client: &Client, account: u128) -> anyhow::Result<Vec<AccessTrailReply>> {
    let mut request = AccessTrailRequest::newest(account);
    let mut pages: Vec<AccessTrailReply> = Vec::new();
    loop {
        let page = client.access_trail(&request).await?;
        // Every later page against the first page's checkpoint: the trail grows meanwhile
        // (these reads are recorded too). More to fetch while the oldest read so far names
        // one before it (a page ends at a count or a size).
        request.checkpoint = page.checkpoint;
        let oldest = page.reads.last().map(|read| {
            let previous = parse_leaf(read.index, &read.leaf, account).map(|(_, p)| p);
            (read.index, previous)
        });
        pages.push(page);
        match oldest {
            Some((index, Ok(previous))) if previous != NO_PREVIOUS => request.before = index,
            _ => break,
        }
    }
    Ok(pages)
}

/// `account`'s reads in `pages`, checked against the cluster's verifier key `log_key`; `Err`
/// names the first thing that does not verify.
pub fn verify_trail(
    log_key: &NoteVerifier,
    account: u128,
    pages: &[AccessTrailReply],
) -> Result<Vec<TrailRead>, String> {
    let origin = format!("{}{ACCESS_ORIGIN_SUFFIX}", log_key.name());
    let key = log_key
        .renamed(&origin)
        .map_err(|error| format!("the key: {error}"))?;
    let first = pages.first().ok_or("no reply")?;
    let checkpoint = key
        .open_checkpoint(&first.note)
        .map_err(|error| format!("the access checkpoint does not verify: {error}"))?;
    if checkpoint.origin != origin {
        return Err(format!(
            "the access checkpoint is of {}, not {origin}",
            checkpoint.origin
        ));
    }
    let mut reads = Vec::new();
    let mut expected = None;
    for page in pages {
        if page.note != first.note || page.size != checkpoint.size {
            return Err("the pages are not against one checkpoint".to_owned());
        }
        for read in &page.reads {
            let at = read.index;
            if expected.is_some_and(|expected| expected != at) {
                return Err(format!(
                    "the trail is not whole: read {} names read {} before it, {at} came",
                    reads.last().map_or(0, |r: &TrailRead| r.index),
                    expected.unwrap_or_default()
                ));
            }
            verify_inclusion(
                at,
                checkpoint.size,
                &leaf_hash(&read.leaf),
                &read.proof,
                &checkpoint.root,
            )
            .map_err(|error| format!("read {at} is not in the signed trail: {error}"))?;
            let (parsed, previous) = parse_leaf(at, &read.leaf, account)?;
            reads.push(parsed);
            expected = Some(previous);
        }
    }
    match expected {
        Some(NO_PREVIOUS) | None => Ok(reads),
        Some(previous) => Err(format!(
            "the trail is not whole: its oldest read names read {previous} before it"
        )),
    }
}

/// A leaf's fields, and the previous read of `account` it names.
fn parse_leaf(index: u64, leaf: &[u8], account: u128) -> Result<(TrailRead, u64), String> {
    let bad = |why: &str| format!("read {index}: {why}");
    if leaf.len() < ACCESS_LEAF_HEADER_BYTES || leaf[0] != ACCESS_LEAF_VERSION {
        return Err(bad("not an access leaf of version 1"));
    }
    let u64_at = |at: usize| u64::from_le_bytes(leaf[at..at + 8].try_into().expect("8 bytes"));
    let count = u32::from_le_bytes(leaf[72..76].try_into().expect("4 bytes"));
    if leaf.len() != ACCESS_LEAF_HEADER_BYTES + count as usize * ACCESS_LEAF_ACCOUNT_BYTES {
        return Err(bad("its length is not its accounts'"));
    }
    let previous = leaf[ACCESS_LEAF_HEADER_BYTES..]
        .chunks_exact(ACCESS_LEAF_ACCOUNT_BYTES)
        .find(|touch| u128::from_le_bytes(touch[..16].try_into().expect("16 bytes")) == account)
        .map(|touch| u64::from_le_bytes(touch[16..].try_into().expect("8 bytes")))
        .ok_or_else(|| bad("it does not name the account"))?;
    let name = &leaf[40..72];
    let end = name
        .iter()
        .position(|&byte| byte == 0)
        .unwrap_or(name.len());
    Ok((
        TrailRead {
            index,
            time_ns: u64_at(16),
            commit_index: u64_at(8),
            operation: leaf[1],
            operation_name: operation_name(leaf[1]),
            credential: leaf[24..40].iter().map(|b| format!("{b:02x}")).collect(),
            name: String::from_utf8_lossy(&name[..end]).into_owned(),
            accounts: count,
        },
        previous,
    ))
}

fn operation_name(kind: u8) -> &'static str {
    use tally_client::protocol::*;
    match kind {
        KIND_LOOKUP_ACCOUNTS => "lookup-accounts",
        KIND_LOOKUP_TRANSFERS => "lookup-transfers",
        KIND_LOOKUP_TRADES => "lookup-trades",
        KIND_STATEMENT => "statement",
        KIND_BALANCES_AS_OF => "balances",
        KIND_PROVE => "prove",
        KIND_ACCESS_TRAIL => "reads",
        KIND_QUERY_ACCOUNTS => "query-accounts",
        KIND_QUERY_TRANSFERS => "query-transfers",
        KIND_QUERY_TRADES => "query-trades",
        KIND_QUERY_POSITIONS => "query-positions",
        KIND_QUERY_EVENTS => "query-events",
        _ => "other",
    }
}

/// `tally client reads ACCOUNT --key KEY`: the verified trail as lines for people, or JSON.
pub async fn print_trail(
    client: &Client,
    account: u128,
    key: &str,
    json: bool,
) -> anyhow::Result<()> {
    let key: NoteVerifier = key
        .trim()
        .parse()
        .map_err(|error| anyhow::anyhow!("--key is not a verifier key: {error}"))?;
    let pages = fetch_trail(client, account).await?;
    let reads = match verify_trail(&key, account, &pages) {
        Ok(reads) => reads,
        Err(why) => bail!("the access trail does not verify: {why}"),
    };
    let size = pages.first().map_or(0, |page| page.size);
    let checkpoint = pages.first().map_or(LATEST, |page| page.checkpoint);
    if json {
        let value = serde_json::json!({
            "account": account.to_string(),
            "checkpoint": checkpoint,
            "size": size,
            "reads": reads,
        });
        println!("{}", serde_json::to_string_pretty(&value).context("JSON")?);
    } else {
        println!("INDEX  TIME_NS  COMMIT  OPERATION  CREDENTIAL  NAME  ACCOUNTS");
        for read in &reads {
            println!(
                "{}  {}  {}  {}  {}  {}  {}",
                read.index,
                read.time_ns,
                read.commit_index,
                read.operation_name,
                read.credential,
                read.name,
                read.accounts
            );
        }
    }
    eprintln!(
        "{} reads of account {account}, verified: access checkpoint {checkpoint} of {size} \
         reads, signed by {}{ACCESS_ORIGIN_SUFFIX}; the chain is whole down to the first read",
        reads.len(),
        key.name()
    );
    Ok(())
}
