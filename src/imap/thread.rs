//! THREAD's two algorithms (RFC 5256 §3), sans-IO: messages in, the text
//! of the THREAD response out.
//!
//! Built for hostile input: every walk is a loop over an explicit stack
//! (a 10,000-deep reply chain recurses nowhere), links that would close a
//! loop are refused, a Message-ID seen twice gives the second message an
//! id of its own, and children lists are built once from parent links, so
//! relinking a message never searches a sibling list.

use std::collections::HashMap;

use crate::mime::SortKeys;

/// What threading reads of a message's stored keys: a fifth of the size
/// of a whole [`SortKeys`] (80 bytes before the strings, where the address
/// keys THREAD never reads take 120 more), which counts on a 100,000-message
/// folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreadKeys {
    /// The base subject, casemapped.
    pub subject: String,
    /// Whether the subject marked a reply or forward.
    pub reply: bool,
    pub message_id: Option<String>,
    /// References' ids, oldest first, or In-Reply-To's first id.
    pub references: Vec<String>,
}

impl From<SortKeys> for ThreadKeys {
    fn from(keys: SortKeys) -> ThreadKeys {
        ThreadKeys {
            subject: keys.subject,
            reply: keys.reply,
            message_id: keys.message_id,
            references: keys.references,
        }
    }
}

/// One message to thread, in mailbox order.
pub struct ThreadMessage<'a> {
    /// What the response names it by: its sequence number or UID.
    pub number: u32,
    /// The sent date, INTERNALDATE when the Date header is unusable
    /// (as SORT's DATE, RFC 5256 §3).
    pub date: i64,
    pub keys: &'a ThreadKeys,
}

/// ORDEREDSUBJECT: messages grouped by base subject; in each group the
/// earliest is the parent of the others; groups ordered by their first
/// message's date. Ties go by mailbox order.
pub fn ordered_subject(messages: &[ThreadMessage<'_>]) -> String {
    let mut order: Vec<usize> = (0..messages.len()).collect();
    // Unstable sorts here and below: the keys end in a unique index, so
    // the order is the same, and the binary carries less sort code.
    order.sort_unstable_by(|&a, &b| {
        let (ma, mb) = (&messages[a], &messages[b]);
        (ma.keys.subject.as_str(), ma.date, a).cmp(&(mb.keys.subject.as_str(), mb.date, b))
    });
    let mut threads: Vec<&[usize]> = order
        .chunk_by(|&a, &b| messages[a].keys.subject == messages[b].keys.subject)
        .collect();
    threads.sort_unstable_by_key(|thread| (messages[thread[0]].date, thread[0]));
    let mut out = String::new();
    for thread in threads {
        out.push('(');
        out.push_str(&messages[thread[0]].number.to_string());
        let rest = &thread[1..];
        if rest.len() == 1 {
            out.push(' ');
            out.push_str(&messages[rest[0]].number.to_string());
        } else if !rest.is_empty() {
            out.push(' ');
            for &m in rest {
                out.push('(');
                out.push_str(&messages[m].number.to_string());
                out.push(')');
            }
        }
        out.push(')');
    }
    out
}

#[derive(Default)]
struct Container {
    /// Index into the messages; None for a dummy (an id only referenced).
    message: Option<usize>,
    parent: Option<usize>,
    children: Vec<usize>,
    /// How many containers name this one as parent (step 1, before the
    /// children lists exist).
    child_count: u32,
}

struct Forest {
    nodes: Vec<Container>,
}

impl Forest {
    fn new_node(&mut self, message: Option<usize>) -> usize {
        self.nodes.push(Container {
            message,
            ..Container::default()
        });
        self.nodes.len() - 1
    }

    /// Whether making `parent` the parent of `child` would close a loop.
    fn would_loop(&self, parent: usize, child: usize) -> bool {
        if parent == child {
            return true;
        }
        // Only a container with children can be anyone's ancestor.
        if self.nodes[child].child_count == 0 {
            return false;
        }
        let mut at = self.nodes[parent].parent;
        while let Some(node) = at {
            if node == child {
                return true;
            }
            at = self.nodes[node].parent;
        }
        false
    }

    fn set_parent(&mut self, child: usize, parent: Option<usize>) {
        if let Some(old) = self.nodes[child].parent {
            self.nodes[old].child_count -= 1;
        }
        if let Some(new) = parent {
            self.nodes[new].child_count += 1;
        }
        self.nodes[child].parent = parent;
    }

    fn is_dummy(&self, node: usize) -> bool {
        self.nodes[node].message.is_none()
    }
}

/// REFERENCES (RFC 5256 §3): threads by Message-ID, References and
/// In-Reply-To, then gathers top-level threads with the same base subject.
pub fn references(messages: &[ThreadMessage<'_>]) -> String {
    let mut forest = Forest {
        nodes: Vec::with_capacity(messages.len() * 2),
    };
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(messages.len() * 2);

    // Step 1: link.
    for (index, message) in messages.iter().enumerate() {
        // A message without a Message-ID, or with one already taken by
        // another message, gets a container no reference can reach.
        let own = match message.keys.message_id.as_deref() {
            Some(id) => match ids.get(id) {
                Some(&node) if forest.nodes[node].message.is_none() => {
                    forest.nodes[node].message = Some(index);
                    node
                }
                Some(_) => forest.new_node(Some(index)),
                None => {
                    let node = forest.new_node(Some(index));
                    ids.insert(id, node);
                    node
                }
            },
            None => forest.new_node(Some(index)),
        };
        // 1A: each reference is the child of the one before it, unless it
        // has a parent already or the link would close a loop.
        let mut previous: Option<usize> = None;
        for id in &message.keys.references {
            let node = match ids.get(id.as_str()) {
                Some(&node) => node,
                None => {
                    let node = forest.new_node(None);
                    ids.insert(id, node);
                    node
                }
            };
            if let Some(parent) = previous {
                if forest.nodes[node].parent.is_none() && !forest.would_loop(parent, node) {
                    forest.set_parent(node, Some(parent));
                }
            }
            previous = Some(node);
        }
        // 1B: the last reference is the message's parent, replacing any
        // parent an earlier message's References presumed.
        if let Some(parent) = previous {
            if !forest.would_loop(parent, own) {
                forest.set_parent(own, Some(parent));
            }
        }
    }
    // The children lists, in creation order (the order is settled by the
    // sorting below; this only has to be deterministic).
    let mut roots = Vec::new();
    for node in 0..forest.nodes.len() {
        match forest.nodes[node].parent {
            Some(parent) => forest.nodes[parent].children.push(node),
            None => roots.push(node),
        }
    }

    // Step 3: prune dummies.
    let mut roots = prune(&mut forest, roots, true);
    let mut work: Vec<usize> = roots.clone();
    while let Some(node) = work.pop() {
        let children = std::mem::take(&mut forest.nodes[node].children);
        let children = prune(&mut forest, children, false);
        work.extend_from_slice(&children);
        forest.nodes[node].children = children;
    }
    // A top-level dummy left with one child or none, once the levels under
    // it were pruned, gives way to its child.
    roots = roots
        .into_iter()
        .filter_map(|node| {
            let container = &forest.nodes[node];
            match (container.message, container.children.len()) {
                (None, 0) => None,
                (None, 1) => Some(container.children[0]),
                _ => Some(node),
            }
        })
        .collect();

    // Step 4: sort the top level by date (a dummy by its first child's).
    let key = |forest: &Forest, node: usize| -> (i64, usize) {
        let node = match forest.nodes[node].message {
            Some(_) => node,
            None => forest.nodes[node].children.first().copied().unwrap_or(node),
        };
        match forest.nodes[node].message {
            Some(m) => (messages[m].date, m),
            None => (i64::MAX, usize::MAX),
        }
    };
    for &root in &roots {
        if forest.is_dummy(root) {
            let mut children = std::mem::take(&mut forest.nodes[root].children);
            children.sort_by_key(|&c| key(&forest, c));
            forest.nodes[root].children = children;
        }
    }
    roots.sort_by_key(|&r| key(&forest, r));

    // Step 5: gather top-level threads with the same base subject.
    let subject_of = |forest: &Forest, node: usize| -> Option<usize> {
        match forest.nodes[node].message {
            Some(m) => Some(m),
            None => forest.nodes[node]
                .children
                .first()
                .and_then(|&c| forest.nodes[c].message),
        }
    };
    let mut table: HashMap<&str, usize> = HashMap::new();
    for &root in &roots {
        let Some(m) = subject_of(&forest, root) else {
            continue;
        };
        let subject = messages[m].keys.subject.as_str();
        if subject.is_empty() {
            continue;
        }
        match table.get(subject) {
            None => {
                table.insert(subject, root);
            }
            Some(&there) => {
                let there_reply = forest.nodes[there]
                    .message
                    .is_some_and(|m| messages[m].keys.reply);
                let prefer = (forest.is_dummy(root) && !forest.is_dummy(there))
                    || (!forest.is_dummy(there)
                        && there_reply
                        && !forest.is_dummy(root)
                        && !messages[m].keys.reply);
                if prefer {
                    table.insert(subject, root);
                }
            }
        }
    }
    let mut slot: Vec<Option<usize>> = vec![None; forest.nodes.len()];
    for (i, &root) in roots.iter().enumerate() {
        slot[root] = Some(i);
    }
    let mut kept: Vec<Option<usize>> = roots.iter().copied().map(Some).collect();
    for i in 0..roots.len() {
        let Some(root) = kept[i] else { continue };
        let Some(m) = subject_of(&forest, root) else {
            continue;
        };
        let subject = messages[m].keys.subject.as_str();
        if subject.is_empty() {
            continue;
        }
        let Some(&there) = table.get(subject) else {
            continue;
        };
        if there == root {
            continue;
        }
        let (root_dummy, there_dummy) = (forest.is_dummy(root), forest.is_dummy(there));
        if root_dummy && there_dummy {
            let moved = std::mem::take(&mut forest.nodes[root].children);
            forest.nodes[there].children.extend(moved);
            kept[i] = None;
        } else if there_dummy {
            forest.nodes[there].children.push(root);
            kept[i] = None;
        } else if root_dummy {
            forest.nodes[root].children.push(there);
            if let Some(s) = slot.get(there).copied().flatten() {
                kept[s] = None;
            }
            table.insert(subject, root);
        } else {
            let there_reply = forest.nodes[there]
                .message
                .is_some_and(|m| messages[m].keys.reply);
            if !there_reply && messages[m].keys.reply {
                forest.nodes[there].children.push(root);
                kept[i] = None;
            } else {
                let dummy = forest.new_node(None);
                forest.nodes[dummy].children = vec![there, root];
                slot.push(None);
                if let Some(s) = slot.get(there).copied().flatten() {
                    kept[s] = Some(dummy);
                    slot[dummy] = Some(s);
                }
                kept[i] = None;
                table.insert(subject, dummy);
            }
        }
    }
    let mut roots: Vec<usize> = kept.into_iter().flatten().collect();

    // Step 6: sort every set of siblings by date, children before their
    // parents (a dummy sorts by its first child).
    let mut preorder = Vec::with_capacity(forest.nodes.len());
    let mut stack: Vec<usize> = roots.clone();
    while let Some(node) = stack.pop() {
        preorder.push(node);
        stack.extend_from_slice(&forest.nodes[node].children);
    }
    let mut sort_key: Vec<(i64, usize)> = vec![(i64::MAX, usize::MAX); forest.nodes.len()];
    for &node in preorder.iter().rev() {
        let mut children = std::mem::take(&mut forest.nodes[node].children);
        children.sort_by_key(|&c| sort_key[c]);
        sort_key[node] = match forest.nodes[node].message {
            Some(m) => (messages[m].date, m),
            None => children
                .first()
                .map_or((i64::MAX, usize::MAX), |&c| sort_key[c]),
        };
        forest.nodes[node].children = children;
    }
    roots.sort_by_key(|&r| sort_key[r]);
    render(&forest, &roots, messages)
}

/// Step 3 on one set of siblings: a dummy without children goes; one with
/// children gives way to them, except at the top level when it has more
/// than one. Children moved up are looked at again, as they may be dummies.
fn prune(forest: &mut Forest, siblings: Vec<usize>, top: bool) -> Vec<usize> {
    let mut out = Vec::with_capacity(siblings.len());
    let mut pending: Vec<usize> = siblings.into_iter().rev().collect();
    while let Some(node) = pending.pop() {
        if !forest.is_dummy(node) {
            out.push(node);
            continue;
        }
        let children = std::mem::take(&mut forest.nodes[node].children);
        if top && children.len() > 1 {
            forest.nodes[node].children = children;
            out.push(node);
            continue;
        }
        pending.extend(children.into_iter().rev());
    }
    out
}

/// The thread list: a message with one child is followed by it, one with
/// several by each child's thread in parentheses; a dummy shows only its
/// children, each in parentheses.
fn render(forest: &Forest, roots: &[usize], messages: &[ThreadMessage<'_>]) -> String {
    enum Step {
        Node(usize),
        Text(&'static str),
    }
    let mut out = String::new();
    let mut steps: Vec<Step> = Vec::new();
    for &root in roots.iter().rev() {
        steps.push(Step::Text(")"));
        steps.push(Step::Node(root));
        steps.push(Step::Text("("));
    }
    while let Some(step) = steps.pop() {
        let node = match step {
            Step::Text(text) => {
                out.push_str(text);
                continue;
            }
            Step::Node(node) => node,
        };
        let container = &forest.nodes[node];
        let children = &container.children;
        if let Some(m) = container.message {
            out.push_str(&messages[m].number.to_string());
            if children.len() == 1 {
                out.push(' ');
                steps.push(Step::Node(children[0]));
                continue;
            }
            if !children.is_empty() {
                out.push(' ');
            }
        }
        for &child in children.iter().rev() {
            steps.push(Step::Text(")"));
            steps.push(Step::Node(child));
            steps.push(Step::Text("("));
        }
    }
    out
}

#[cfg(test)]
mod tests;
