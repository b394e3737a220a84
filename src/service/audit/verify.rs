//! `audit verify`: walks one tenant's chain from its anchor (the start, or the
//! checkpoint retention cut at) and reports the first record that was changed,
//! deleted, inserted or reordered, a tail that was cut off, or a stretch rewritten
//! with recomputed hashes (it no longer matches a signed checkpoint).
use std::collections::VecDeque;

use crate::clock::Millis;
use crate::model::{AuditRecord, Checkpoint, audit::GENESIS};

/// How far ahead and behind the walk looks to tell an insertion or a reordering
/// from a change; farther moves are reported as changes.
pub(super) const LOOK: usize = 64;

/// What was done to the chain, as far as the walk can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A record's content no longer matches its hash, or its hash was recomputed.
    Changed,
    /// Records are missing (deleted, or cut before their retention ran out).
    Deleted,
    /// A record that does not belong sits in the chain.
    Inserted,
    /// Records are out of order.
    Reordered,
    /// Records at the end are missing.
    Truncated,
    /// A stretch was rewritten with recomputed hashes: it no longer matches a
    /// signed checkpoint.
    Rewritten,
    /// A checkpoint's signature does not hold.
    Forged,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Deleted => "deleted",
            Self::Inserted => "inserted",
            Self::Reordered => "reordered",
            Self::Truncated => "truncated",
            Self::Rewritten => "rewritten",
            Self::Forged => "forged_checkpoint",
        }
    }
}

/// The first thing wrong with a chain: what, at which sequence number, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: ProblemKind,
    pub seq: i64,
    pub detail: String,
}

fn problem(kind: ProblemKind, seq: i64, detail: String) -> Problem {
    Problem { kind, seq, detail }
}

/// The walk's state: where the chain must continue, and what it has seen.
pub(super) struct Walk {
    /// The sequence number the next record must have.
    next_seq: i64,
    /// The hash the next record must chain from.
    prev: Vec<u8>,
    /// The hashes of the last [`LOOK`] records accepted, newest last.
    recent: VecDeque<Vec<u8>>,
    /// Checkpoints not yet reached, in sequence order, and the last one matched.
    pending: VecDeque<Checkpoint>,
    last_matched: i64,
    pub(super) records: u64,
}

impl Walk {
    /// A walk from `anchor` (the checkpoint the chain resumes after, or none: the
    /// genesis), checking `checkpoints` (already found authentic) on the way.
    pub(super) fn new(anchor: Option<&Checkpoint>, checkpoints: Vec<Checkpoint>) -> Self {
        let (seq, prev) = anchor.map_or((0, GENESIS.to_vec()), |c| (c.seq, c.hash.clone()));
        Self {
            next_seq: seq + 1,
            prev,
            recent: VecDeque::with_capacity(LOOK),
            pending: checkpoints.into_iter().filter(|c| c.seq > seq).collect(),
            last_matched: seq,
            records: 0,
        }
    }

    /// The last sequence number accepted.
    pub(super) fn last_seq(&self) -> i64 {
        self.next_seq - 1
    }

    /// Checks `r`, the next record in sequence order; `ahead` are the ones after it
    /// (up to [`LOOK`]).
    pub(super) fn step(&mut self, r: &AuditRecord, ahead: &[AuditRecord]) -> Result<(), Problem> {
        let seq = r.seq.unwrap_or_default();
        let next = self.next_seq;
        if seq > next {
            return Err(problem(
                ProblemKind::Deleted,
                next,
                format!("records {next} to {} are missing", seq - 1),
            ));
        }
        if seq < next {
            return Err(problem(
                ProblemKind::Inserted,
                seq,
                format!("a second record claims sequence number {seq}"),
            ));
        }
        let prev = r.prev_hash.as_deref().unwrap_or_default();
        if prev != self.prev.as_slice() {
            return Err(self.misplaced(r, ahead));
        }
        if !r.hash_holds() {
            return Err(problem(
                ProblemKind::Changed,
                seq,
                format!("record {seq} does not match its hash: its content was edited"),
            ));
        }
        self.accept(r)
    }

    /// Record `r` does not chain from the record before it: say why.
    fn misplaced(&self, r: &AuditRecord, ahead: &[AuditRecord]) -> Problem {
        let seq = r.seq.unwrap_or_default();
        let prev = r.prev_hash.as_deref().unwrap_or_default();
        let before_last = self.recent.len().checked_sub(2).map(|i| &self.recent[i]);
        if before_last.is_some_and(|h| h.as_slice() == prev) {
            return problem(
                ProblemKind::Inserted,
                seq - 1,
                format!(
                    "record {} does not belong: record {seq} chains from record {}",
                    seq - 1,
                    seq - 2
                ),
            );
        }
        if ahead
            .iter()
            .any(|x| x.prev_hash.as_deref() == Some(self.prev.as_slice()))
        {
            let known = self.recent.iter().any(|h| h.as_slice() == prev)
                || ahead.iter().any(|x| x.hash.as_deref() == Some(prev));
            return if known {
                problem(
                    ProblemKind::Reordered,
                    seq,
                    format!(
                        "record {seq} is out of order: the record that follows {} comes later",
                        seq - 1
                    ),
                )
            } else {
                problem(
                    ProblemKind::Inserted,
                    seq,
                    format!("record {seq} does not belong: it chains from no record of this chain"),
                )
            };
        }
        if r.hash_holds_at(seq + 1) {
            return problem(
                ProblemKind::Deleted,
                seq,
                format!("record {seq} was deleted and the records after it renumbered"),
            );
        }
        problem(
            ProblemKind::Changed,
            seq - 1,
            format!(
                "record {} was edited and its hash recomputed: record {seq} chains from its old hash",
                seq - 1
            ),
        )
    }

    fn accept(&mut self, r: &AuditRecord) -> Result<(), Problem> {
        let seq = r.seq.unwrap_or_default();
        let hash = r.hash.clone().unwrap_or_default();
        while self.pending.front().is_some_and(|c| c.seq < seq) {
            self.pending.pop_front();
        }
        if let Some(c) = self.pending.front().filter(|c| c.seq == seq) {
            if c.hash != hash {
                return Err(problem(
                    ProblemKind::Rewritten,
                    self.last_matched + 1,
                    format!(
                        "records {} to {seq} were rewritten with recomputed hashes: record {seq} \
                         does not match the checkpoint signed at {}",
                        self.last_matched + 1,
                        crate::model::rfc3339(c.at)
                    ),
                ));
            }
            self.last_matched = seq;
            self.pending.pop_front();
        }
        if self.recent.len() == LOOK {
            self.recent.pop_front();
        }
        self.recent.push_back(hash.clone());
        self.prev = hash;
        self.next_seq = seq + 1;
        self.records += 1;
        Ok(())
    }

    /// After the last record: a checkpoint or the chain's head past it means the
    /// tail was cut off.
    pub(super) fn finish(&self, head_seq: Option<i64>) -> Result<(), Problem> {
        let last = self.last_seq();
        let signed = self.pending.back().map(|c| c.seq);
        let claimed = signed.into_iter().chain(head_seq).max();
        match claimed {
            Some(end) if end > last => Err(problem(
                ProblemKind::Truncated,
                last + 1,
                format!(
                    "records {} to {end} are missing from the end of the chain",
                    last + 1
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// Where a chain whose first record is `first_seq` resumes: the last checkpoint
/// before it (the cut retention made), if any.
pub(super) fn anchor(checkpoints: &[Checkpoint], first_seq: Option<i64>) -> Option<&Checkpoint> {
    let first = first_seq.unwrap_or(i64::MAX);
    checkpoints.iter().rev().find(|c| c.seq < first)
}

/// A cut (records before the anchor gone) is only retention's work if the anchor
/// was signed before retention's horizon; `retention_ms` 0 keeps everything.
pub(super) fn check_cut(
    anchor: Option<&Checkpoint>,
    now: Millis,
    retention_ms: Millis,
) -> Result<(), Problem> {
    let Some(a) = anchor else { return Ok(()) };
    if retention_ms > 0 && a.at < now - retention_ms {
        return Ok(());
    }
    Err(problem(
        ProblemKind::Deleted,
        1,
        format!(
            "records 1 to {} are missing, and retention would not have pruned them yet",
            a.seq
        ),
    ))
}

/// Records read per query while walking a chain.
const PAGE: u32 = 1000;

impl super::AuditLog {
    /// Walks one chain: checkpoints first (their signatures), then every record.
    pub(super) async fn verify_chain(
        &self,
        tenant_id: &str,
    ) -> crate::error::Result<super::Verification> {
        let (checkpoints, unverifiable, forged) =
            self.authentic(self.store.checkpoints(tenant_id).await?);
        let first = self.store.chained_audit(tenant_id, i64::MIN, PAGE).await?;
        let mut done = (first.len() as u32) < PAGE;
        let mut cursor = first.last().and_then(|r| r.seq).unwrap_or(i64::MIN);
        let mut buffer: VecDeque<AuditRecord> = first.into();
        let first_seq = buffer.front().and_then(|r| r.seq);
        let anchor = anchor(&checkpoints, first_seq).cloned();
        let mut out = super::Verification {
            tenant_id: tenant_id.to_owned(),
            records: 0,
            first_seq: first_seq.unwrap_or_default(),
            last_seq: 0,
            checkpoints: checkpoints.len() as u64,
            unverifiable_checkpoints: unverifiable,
            unchained: self.store.unchained_count(tenant_id).await?,
            problem: forged,
        };
        if out.problem.is_some() {
            return Ok(out);
        }
        let cut = check_cut(anchor.as_ref(), self.now(), self.settings.retention_ms);
        let mut walk = Walk::new(anchor.as_ref(), checkpoints);
        let result = 'walk: {
            if let Err(p) = cut {
                break 'walk Err(p);
            }
            loop {
                if !done && buffer.len() <= LOOK {
                    let more = self.store.chained_audit(tenant_id, cursor, PAGE).await?;
                    done = (more.len() as u32) < PAGE;
                    cursor = more.last().and_then(|r| r.seq).unwrap_or(cursor);
                    buffer.extend(more);
                }
                let Some(r) = buffer.pop_front() else { break };
                let n = buffer.len().min(LOOK);
                if let Err(p) = walk.step(&r, &buffer.make_contiguous()[..n]) {
                    break 'walk Err(p);
                }
            }
            let head = self.store.audit_head(tenant_id).await?.map(|h| h.seq);
            walk.finish(head)
        };
        out.records = walk.records;
        out.last_seq = walk.last_seq();
        out.problem = result.err();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A well-formed chain of `n` records.
    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_vec();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    tenant_id: "ten_1".into(),
                    at: seq,
                    actor: "tok_1".into(),
                    action: format!("action-{seq}"),
                    ..AuditRecord::default()
                };
                link(&mut r, seq, &prev);
                prev = r.hash.clone().unwrap();
                r
            })
            .collect()
    }

    fn link(r: &mut AuditRecord, seq: i64, prev: &[u8]) {
        r.hash = Some(r.chain_hash(seq, prev).to_vec());
        r.seq = Some(seq);
        r.prev_hash = Some(prev.to_vec());
    }

    fn signed(r: &AuditRecord) -> Checkpoint {
        Checkpoint {
            tenant_id: r.tenant_id.clone(),
            seq: r.seq.unwrap(),
            hash: r.hash.clone().unwrap(),
            at: 0,
            key_version: 1,
            mac: Vec::new(),
        }
    }

    fn walk(records: &[AuditRecord], checkpoints: Vec<Checkpoint>) -> Result<(), Problem> {
        let mut w = Walk::new(None, checkpoints);
        for (i, r) in records.iter().enumerate() {
            let end = (i + 1 + LOOK).min(records.len());
            w.step(r, &records[i + 1..end])?;
        }
        w.finish(None)
    }

    fn found(records: &[AuditRecord], checkpoints: Vec<Checkpoint>) -> (ProblemKind, i64) {
        let p = walk(records, checkpoints).expect_err("tampering is found");
        (p.kind, p.seq)
    }

    fn renumber(records: &mut [AuditRecord], by: i64) {
        for r in records {
            r.seq = r.seq.map(|s| s + by);
        }
    }

    #[test]
    fn an_intact_chain_passes() {
        let c = chain(10);
        assert!(walk(&c, vec![signed(&c[4]), signed(&c[9])]).is_ok());
    }

    #[test]
    fn edits_deletions_insertions_and_swaps_are_named() {
        let mut c = chain(8);
        c[2].action = "edited".into();
        assert_eq!(found(&c, vec![]), (ProblemKind::Changed, 3));

        let mut c = chain(8);
        c.remove(2);
        assert_eq!(found(&c, vec![]), (ProblemKind::Deleted, 3));
        renumber(&mut c[2..], -1);
        assert_eq!(found(&c, vec![]), (ProblemKind::Deleted, 3));

        let mut c = chain(8);
        let mut forged = c[1].clone();
        forged.action = "forged".into();
        let prev = c[1].hash.clone().unwrap();
        link(&mut forged, 3, &prev);
        renumber(&mut c[2..], 1);
        c.insert(2, forged.clone());
        assert_eq!(found(&c, vec![]), (ProblemKind::Inserted, 3));
        c[2].prev_hash = Some(vec![7; 32]);
        assert_eq!(found(&c, vec![]), (ProblemKind::Inserted, 3));

        let mut c = chain(8);
        c.swap(2, 3);
        c[2].seq = Some(3);
        c[3].seq = Some(4);
        assert_eq!(found(&c, vec![]), (ProblemKind::Reordered, 3));

        // Edited with its own hash recomputed: the next record gives it away.
        let mut c = chain(8);
        c[2].action = "edited".into();
        let prev = c[1].hash.clone().unwrap();
        link(&mut c[2], 3, &prev);
        assert_eq!(found(&c, vec![]), (ProblemKind::Changed, 3));
    }

    #[test]
    fn checkpoints_catch_truncation_and_recomputed_chains() {
        let mut c = chain(8);
        let checkpoints = vec![signed(&c[3]), signed(&c[7])];
        c.truncate(6);
        assert_eq!(found(&c, checkpoints.clone()), (ProblemKind::Truncated, 7));

        let mut c = chain(8);
        c[5].action = "edited".into();
        for i in 5..8 {
            let prev = c[i - 1].hash.clone().unwrap();
            link(&mut c[i], i as i64 + 1, &prev);
        }
        assert!(
            walk(&c, vec![]).is_ok(),
            "without checkpoints it cannot tell"
        );
        assert_eq!(found(&c, checkpoints), (ProblemKind::Rewritten, 5));
    }

    #[test]
    fn a_cut_is_accepted_only_behind_the_retention_horizon() {
        let c = chain(8);
        let cut = Checkpoint {
            at: 1_000,
            ..signed(&c[3])
        };
        assert!(check_cut(Some(&cut), 1_000 + 86_400_001, 86_400_000).is_ok());
        let early = check_cut(Some(&cut), 2_000, 86_400_000).unwrap_err();
        assert_eq!((early.kind, early.seq), (ProblemKind::Deleted, 1));
        assert!(
            check_cut(Some(&cut), 1_000_000_000, 0).is_err(),
            "0 keeps everything"
        );
        assert!(check_cut(None, 0, 0).is_ok());
        let anchor = anchor(std::slice::from_ref(&cut), Some(5)).unwrap();
        let mut w = Walk::new(Some(anchor), vec![cut.clone()]);
        for i in 4..8 {
            w.step(&c[i], &c[i + 1..]).unwrap();
        }
        assert!(w.finish(Some(8)).is_ok());
        assert_eq!(w.finish(Some(9)).unwrap_err().kind, ProblemKind::Truncated);
    }
}
