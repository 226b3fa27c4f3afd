use super::*;
use crate::mime::casemap::{base_subject, casemap};

struct Msg {
    id: Option<&'static str>,
    refs: &'static [&'static str],
    subject: &'static str,
    date: i64,
}

fn msg(id: &'static str, refs: &'static [&'static str], subject: &'static str, date: i64) -> Msg {
    Msg {
        id: Some(id),
        refs,
        subject,
        date,
    }
}

fn keys(m: &Msg) -> ThreadKeys {
    let (subject, reply) = base_subject(m.subject);
    ThreadKeys {
        subject: casemap(&subject),
        reply,
        message_id: m.id.map(str::to_string),
        references: m.refs.iter().map(|r| r.to_string()).collect(),
    }
}

fn thread(messages: &[Msg], algorithm: fn(&[ThreadMessage<'_>]) -> String) -> String {
    let keys: Vec<ThreadKeys> = messages.iter().map(keys).collect();
    let input: Vec<ThreadMessage<'_>> = messages
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, (m, keys))| ThreadMessage {
            number: i as u32 + 1,
            date: m.date,
            keys,
        })
        .collect();
    algorithm(&input)
}

#[test]
fn replies_nest_under_their_parents() {
    let messages = [
        msg("a", &[], "Hello", 10),
        msg("b", &["a"], "Re: Hello", 20),
        msg("c", &["a", "b"], "Re: Hello", 30),
        msg("d", &["a"], "Re: Hello", 25),
        msg("e", &[], "Other", 5),
    ];
    assert_eq!(thread(&messages, references), "(5)(1 (2 3)(4))");
}

#[test]
fn a_missing_parent_leaves_a_dummy_only_when_needed() {
    // Two replies to a message not in the mailbox: a dummy holds them.
    let two = [msg("b", &["a"], "Re: x", 20), msg("c", &["a"], "Re: x", 10)];
    assert_eq!(thread(&two, references), "((2)(1))");
    // One reply to a missing message stands alone.
    let one = [msg("b", &["a"], "Re: x", 20)];
    assert_eq!(thread(&one, references), "(1)");
    // A dummy in the middle of a chain is spliced out.
    let chain = [msg("a", &[], "x", 1), msg("c", &["a", "b"], "Re: x", 2)];
    assert_eq!(thread(&chain, references), "(1 2)");
}

#[test]
fn top_level_threads_with_one_subject_are_gathered() {
    // Two unrelated messages with the same subject, neither a reply: a
    // dummy parent; a reply joins the non-reply as its child.
    let messages = [
        msg("a", &[], "Party", 10),
        msg("b", &[], "Party", 20),
        msg("c", &[], "Re: Lunch", 30),
        msg("d", &[], "Lunch", 40),
    ];
    assert_eq!(thread(&messages, references), "((1)(2))(4 3)");
}

#[test]
fn loops_in_references_are_refused() {
    let messages = [
        msg("a", &["b"], "x", 1),
        msg("b", &["a"], "x", 2),
        msg("c", &["c"], "y", 3),
        msg("d", &["e", "f", "e"], "z", 4),
    ];
    assert_eq!(thread(&messages, references), "(2 1)(3)(4)");
}

#[test]
fn duplicate_message_ids_keep_both_messages() {
    let messages = [
        msg("a", &[], "x", 1),
        msg("a", &[], "y", 2),
        msg("b", &["a"], "Re: x", 3),
    ];
    assert_eq!(thread(&messages, references), "(1 3)(2)");
}

#[test]
fn messages_without_ids_or_subjects_stand_alone() {
    let messages = [
        Msg {
            id: None,
            refs: &[],
            subject: "",
            date: 2,
        },
        Msg {
            id: None,
            refs: &[],
            subject: "",
            date: 1,
        },
    ];
    assert_eq!(thread(&messages, references), "(2)(1)");
    assert_eq!(thread(&messages, ordered_subject), "(2 1)");
}

#[test]
fn equal_dates_keep_mailbox_order() {
    let messages = [
        msg("a", &[], "x", 5),
        msg("b", &["a"], "Re: x", 5),
        msg("c", &["a"], "Re: x", 5),
    ];
    assert_eq!(thread(&messages, references), "(1 (2)(3))");
}

#[test]
fn ordered_subject_groups_by_base_subject() {
    let messages = [
        msg("a", &[], "Re: Hello", 30),
        msg("b", &[], "Other", 20),
        msg("c", &[], "Hello", 10),
        msg("d", &[], "Fwd: hello", 40),
        msg("e", &[], "other", 25),
    ];
    assert_eq!(thread(&messages, ordered_subject), "(3 (1)(4))(2 5)");
}

/// Builds a chain of `n` replies, each naming every ancestor (capped as
/// delivery caps them), in the given order.
fn deep_chain(n: usize, reverse: bool) -> String {
    let ids: Vec<String> = (0..n).map(|i| format!("m{i}@x")).collect();
    let mut all: Vec<ThreadKeys> = (0..n)
        .map(|i| ThreadKeys {
            subject: "X".into(),
            reply: i > 0,
            message_id: Some(ids[i].clone()),
            references: ids[i.saturating_sub(crate::mime::sort_keys::MAX_REFERENCES)..i].to_vec(),
        })
        .collect();
    if reverse {
        all.reverse();
    }
    let input: Vec<ThreadMessage<'_>> = all
        .iter()
        .enumerate()
        .map(|(i, keys)| ThreadMessage {
            number: i as u32 + 1,
            date: if reverse { (n - i) as i64 } else { i as i64 },
            keys,
        })
        .collect();
    references(&input)
}

#[test]
fn ten_thousand_deep_chains_thread_without_recursion() {
    let n = 10_000;
    let forward = deep_chain(n, false);
    let expected: Vec<String> = (1..=n).map(|i| i.to_string()).collect();
    assert_eq!(forward, format!("({})", expected.join(" ")));
    let backward = deep_chain(n, true);
    let expected: Vec<String> = (1..=n).rev().map(|i| i.to_string()).collect();
    assert_eq!(backward, format!("({})", expected.join(" ")));
}

#[test]
fn many_loops_and_duplicates_stay_cheap() {
    // Every message claims the same id and references the others in a
    // cycle; the work stays linear enough to finish at once.
    let n = 20_000;
    let all: Vec<ThreadKeys> = (0..n)
        .map(|i| ThreadKeys {
            message_id: Some(format!("m{}@x", i % 100)),
            references: vec![format!("m{}@x", (i + 1) % 100), format!("m{}@x", i % 100)],
            ..ThreadKeys::default()
        })
        .collect();
    let input: Vec<ThreadMessage<'_>> = all
        .iter()
        .enumerate()
        .map(|(i, keys)| ThreadMessage {
            number: i as u32 + 1,
            date: 0,
            keys,
        })
        .collect();
    let out = references(&input);
    // Every message appears exactly once.
    let mut seen: Vec<u32> = out
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=n as u32).collect::<Vec<_>>());
}
