//! Net settlement (docs/settlement.md): instructions and settlement commands through the
//! packer like every create, and the book's reads — instructions with where they stand, a
//! cycle's summary page by page.

use super::{Client, ClientError};
use crate::protocol::Operation;
use tally_engine::EventResult;

impl Client {
    /// Submit settlement instructions into their cycles (net settlement); the failed ones by
    /// index.
    pub async fn create_instructions(
        &self,
        instructions: &[tally_engine::settlement::Instruction],
    ) -> Result<Vec<(u32, EventResult)>, ClientError> {
        self.create(4, instructions.iter().map(|i| i.encode()).collect())
            .await
    }

    /// Apply settlement commands, in order: a cycle's lifecycle (operators only), holds,
    /// releases and cancellations of instructions; the failed ones by index. A command's
    /// retry with its id is answered `exists`.
    pub async fn settlement_commands(
        &self,
        commands: &[tally_engine::records::SettlementCommand],
    ) -> Result<Vec<(u32, EventResult)>, ClientError> {
        self.create(5, commands.iter().map(|c| c.encode()).collect())
            .await
    }

    /// Settlement instructions by id, each with where it stands; ids not found (or outside a
    /// reader's scope) are left out.
    pub async fn lookup_instructions(
        &self,
        ids: &[u128],
    ) -> Result<Vec<tally_engine::settlement_wire::InstructionView>, ClientError> {
        use tally_engine::settlement_wire::{InstructionView, INSTRUCTION_VIEW_BYTES};
        let body = self
            .read(
                Operation::LookupInstructions,
                crate::protocol::encode_ids(ids),
            )
            .await?;
        if !body.len().is_multiple_of(INSTRUCTION_VIEW_BYTES) {
            return Err(ClientError::Decode(format!(
                "an instruction lookup reply of {} bytes",
                body.len()
            )));
        }
        body.chunks_exact(INSTRUCTION_VIEW_BYTES)
            .map(|chunk| {
                InstructionView::decode(chunk.try_into().expect("whole views"))
                    .map_err(ClientError::Decode)
            })
            .collect()
    }

    /// A settlement cycle's summary (phase, counts by status, run record) with at most `limit`
    /// of its exceptions after instruction id `after` (0 for the first page).
    pub async fn settlement_cycle(
        &self,
        cycle: u32,
        after: u128,
        limit: u32,
    ) -> Result<tally_engine::settlement_wire::CycleSummary, ClientError> {
        let mut body = Vec::with_capacity(24);
        body.extend_from_slice(&cycle.to_le_bytes());
        body.extend_from_slice(&limit.to_le_bytes());
        body.extend_from_slice(&after.to_le_bytes());
        let reply = self.read(Operation::SettlementCycle, body).await?;
        tally_engine::settlement_wire::CycleSummary::decode(&reply).map_err(ClientError::Decode)
    }
}
