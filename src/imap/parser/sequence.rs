//! Sequence sets and message sets (RFC 9051 §9 `sequence-set`, RFC 5182 `$`).

use std::ops::RangeInclusive;

use super::lexer::{parse_decimal, too_large};
use super::{Parsed, Parser, MAX_RANGES};

/// A message set as the client wrote it: explicit ranges, or `$`, the
/// result saved by SEARCH RETURN (SAVE) (RFC 5182), which only the session
/// can resolve. `$` is accepted only on its own, not inside a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageSet {
    Set(SequenceSet),
    Saved,
}

/// One or more ranges, at most [`MAX_RANGES`], in the client's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SequenceSet(Vec<SeqRange>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    pub start: SeqBound,
    pub end: SeqBound,
}

/// A sequence number or UID (never 0), or `*`, the largest in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqBound {
    Num(u32),
    Star,
}

impl SeqRange {
    /// Lowest and highest number covered, `*` standing for `star`; a range
    /// may be written either way round (RFC 9051 §9, seq-range).
    pub fn bounds(&self, star: u32) -> (u32, u32) {
        let value = |bound: SeqBound| match bound {
            SeqBound::Num(n) => n,
            SeqBound::Star => star,
        };
        let (a, b) = (value(self.start), value(self.end));
        (a.min(b), a.max(b))
    }
}

impl SequenceSet {
    pub fn ranges(&self) -> &[SeqRange] {
        &self.0
    }

    /// Whether `n` is in the set, `*` standing for `star`. Linear in the
    /// number of ranges; for many lookups, [`Self::resolve`] once instead.
    pub fn contains(&self, n: u32, star: u32) -> bool {
        self.0.iter().any(|range| {
            let (low, high) = range.bounds(star);
            (low..=high).contains(&n)
        })
    }

    /// The set as sorted, disjoint ranges within `1..=max`, `*` standing for
    /// `max`: what a redb range scan over UIDs wants.
    pub fn resolve(&self, max: u32) -> Vec<RangeInclusive<u32>> {
        let mut spans: Vec<(u32, u32)> = self
            .0
            .iter()
            .map(|range| range.bounds(max))
            .map(|(low, high)| (low.max(1), high.min(max)))
            .filter(|(low, high)| low <= high)
            .collect();
        spans.sort_unstable();
        let mut merged: Vec<RangeInclusive<u32>> = Vec::with_capacity(spans.len());
        for (low, high) in spans {
            match merged.last_mut() {
                Some(last) if low <= last.end().saturating_add(1) => {
                    *last = *last.start()..=high.max(*last.end());
                }
                _ => merged.push(low..=high),
            }
        }
        merged
    }

    /// Every number of the set within `1..=max`, ascending, each once.
    pub fn iter_within(&self, max: u32) -> impl Iterator<Item = u32> {
        self.resolve(max).into_iter().flatten()
    }
}

impl Parser {
    pub(super) fn message_set(&mut self) -> Parsed<MessageSet> {
        if self.eat(b'$') {
            return Ok(MessageSet::Saved);
        }
        let mut ranges = Vec::new();
        loop {
            let start = self.seq_bound()?;
            let end = if self.eat(b':') {
                self.seq_bound()?
            } else {
                start
            };
            if ranges.len() == MAX_RANGES {
                return Err(format!("sequence set has more than {MAX_RANGES} ranges"));
            }
            ranges.push(SeqRange { start, end });
            if !self.eat(b',') {
                return Ok(MessageSet::Set(SequenceSet(ranges)));
            }
        }
    }

    pub(super) fn seq_bound(&mut self) -> Parsed<SeqBound> {
        if self.eat(b'*') {
            return Ok(SeqBound::Star);
        }
        let digits = self.take_while(|b| b.is_ascii_digit());
        let shown = String::from_utf8_lossy(digits).into_owned();
        match (
            digits.first(),
            parse_decimal(digits).and_then(|n| u32::try_from(n).ok()),
        ) {
            (None, _) => Err(self.expected("sequence number or *")),
            (Some(b'0'), _) => Err(format!(
                "invalid sequence number {shown}: numbers start at 1"
            )),
            (_, None) => Err(too_large("sequence number", digits, u32::MAX.into())),
            (_, Some(n)) => Ok(SeqBound::Num(n)),
        }
    }
}
