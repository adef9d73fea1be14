//! The dependency graph between relations, and the write closure computed over it.
//!
//! Relations are numbered `0..n` (in `RelationName` order, so sorted ids are sorted
//! names). Two kinds of membership are told apart while walking, because they spread
//! differently:
//!
//! - **written**: rows of the relation change. Spreads to partitions and inheritance
//!   children (a write through a parent reaches them), to the relations a view reads
//!   when the view itself is written (an auto-updatable view writes its base
//!   relation), to tables referencing it through a foreign key with an `ON DELETE` /
//!   `ON UPDATE` action of `CASCADE`, `SET NULL` or `SET DEFAULT`, and to what the
//!   relation's triggers and rules write.
//! - **changed**: the relation's query results change without its own rows being
//!   written. Spreads upward only: to views and materialized views that read it, and to
//!   partition and inheritance parents (whose scans include the child's rows). Triggers
//!   of a parent do not fire for a write made directly to a child, and a view's
//!   `INSTEAD OF` triggers fire only when the view itself is written.
//!
//! Every written relation is also changed. The closure is the changed set, plus
//! `unknown` when some trigger or rule on a written relation has effects we cannot know.

use std::collections::VecDeque;

/// The effects of a relation's triggers and rules, resolved to relation ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Effects {
    /// Relations written.
    pub writes: Vec<u32>,
    /// Relations truncated with `CASCADE`.
    pub truncate_cascade: Vec<u32>,
    /// Some effect cannot be known (dynamic SQL, a C function outside `pg_catalog`, …).
    pub unknown: bool,
}

impl Effects {
    /// Adds `other`'s effects to these.
    pub fn merge(&mut self, other: &Effects) {
        self.writes.extend_from_slice(&other.writes);
        self.truncate_cascade
            .extend_from_slice(&other.truncate_cascade);
        self.unknown |= other.unknown;
    }

    /// Sorts and deduplicates the id lists.
    pub fn normalize(&mut self) {
        for list in [&mut self.writes, &mut self.truncate_cascade] {
            list.sort_unstable();
            list.dedup();
        }
    }
}

/// Edges by relation id; every `Vec` has one entry per relation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Graph {
    /// Views and materialized views whose definition reads the relation.
    pub readers: Vec<Vec<u32>>,
    /// Relations a view or materialized view reads (empty for tables).
    pub reads: Vec<Vec<u32>>,
    /// Direct partition / inheritance parents.
    pub parents: Vec<Vec<u32>>,
    /// Direct partitions / inheritance children.
    pub children: Vec<Vec<u32>>,
    /// Tables with a foreign key to the relation whose `ON DELETE` or `ON UPDATE`
    /// action writes them (`CASCADE`, `SET NULL`, `SET DEFAULT`).
    pub cascades: Vec<Vec<u32>>,
    /// Tables with any foreign key to the relation (what `TRUNCATE … CASCADE` reaches).
    pub referenced_by: Vec<Vec<u32>>,
    /// What the relation's triggers and (non-view) rules write.
    pub effects: Vec<Effects>,
    /// Relations whose results may change on any write (views that call a non-immutable
    /// user function, which may read any table), closed upward.
    pub always_changed: Vec<u32>,
}

/// A write closure over relation ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct IdClosure {
    /// Changed relations, sorted and deduplicated.
    pub ids: Vec<u32>,
    /// Some effect cannot be known: invalidate everything.
    pub unknown: bool,
}

impl Graph {
    /// An empty graph over `n` relations.
    pub fn new(n: usize) -> Self {
        Graph {
            readers: vec![Vec::new(); n],
            reads: vec![Vec::new(); n],
            parents: vec![Vec::new(); n],
            children: vec![Vec::new(); n],
            cascades: vec![Vec::new(); n],
            referenced_by: vec![Vec::new(); n],
            effects: vec![Effects::default(); n],
            always_changed: Vec::new(),
        }
    }

    /// Relations whose results change when `start` is written; with `truncate_cascade`,
    /// `start` is truncated with `CASCADE`, which also truncates every table that
    /// references it (any foreign key, recursively, and their partitions).
    ///
    /// Costs O(size of the closure) plus the sort; `scratch` must come from
    /// [`Scratch::new`] with this graph's relation count.
    pub fn closure(
        &self,
        start: &[u32],
        truncate_cascade: bool,
        scratch: &mut Scratch,
    ) -> IdClosure {
        scratch.epoch += 1;
        let epoch = scratch.epoch;
        let mut unknown = false;
        let mut queue: VecDeque<(u32, bool)> =
            start.iter().map(|&id| (id, truncate_cascade)).collect();
        let mut upward: Vec<u32> = Vec::new();
        while let Some((id, truncating)) = queue.pop_front() {
            let i = id as usize;
            if truncating && scratch.truncated[i] != epoch {
                scratch.truncated[i] = epoch;
                queue.extend(self.referenced_by[i].iter().map(|&r| (r, true)));
                queue.extend(self.children[i].iter().map(|&c| (c, true)));
            }
            if scratch.written[i] == epoch {
                continue;
            }
            scratch.written[i] = epoch;
            upward.push(id);
            queue.extend(self.children[i].iter().map(|&c| (c, false)));
            queue.extend(self.cascades[i].iter().map(|&c| (c, false)));
            queue.extend(self.reads[i].iter().map(|&b| (b, false)));
            let effects = &self.effects[i];
            unknown |= effects.unknown;
            queue.extend(effects.writes.iter().map(|&w| (w, false)));
            queue.extend(effects.truncate_cascade.iter().map(|&t| (t, true)));
        }
        if !upward.is_empty() {
            upward.extend_from_slice(&self.always_changed);
        }
        let mut ids = Vec::new();
        while let Some(id) = upward.pop() {
            let i = id as usize;
            if scratch.changed[i] == epoch {
                continue;
            }
            scratch.changed[i] = epoch;
            ids.push(id);
            upward.extend_from_slice(&self.readers[i]);
            upward.extend_from_slice(&self.parents[i]);
        }
        ids.sort_unstable();
        IdClosure { ids, unknown }
    }
}

/// Visited marks reused across [`Graph::closure`] calls: a relation is marked when its
/// slot holds the current epoch, so a call never clears the arrays.
#[derive(Debug, Clone)]
pub(crate) struct Scratch {
    epoch: u32,
    written: Vec<u32>,
    truncated: Vec<u32>,
    changed: Vec<u32>,
}

impl Scratch {
    /// Marks for a graph of `n` relations.
    pub fn new(n: usize) -> Self {
        Scratch {
            epoch: 0,
            written: vec![0; n],
            truncated: vec![0; n],
            changed: vec![0; n],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 0 parent ← 1 partition, 2 partition; 3 view over 0; 4 table cascading from 1;
    /// 5 view over 4; 6 audit table written by a trigger on 4; 7 unrelated.
    fn closure(g: &Graph, start: &[u32], truncate_cascade: bool) -> IdClosure {
        g.closure(start, truncate_cascade, &mut Scratch::new(g.readers.len()))
    }

    fn graph() -> Graph {
        let mut g = Graph::new(8);
        g.children[0] = vec![1, 2];
        g.parents[1] = vec![0];
        g.parents[2] = vec![0];
        g.readers[0] = vec![3];
        g.reads[3] = vec![0];
        g.cascades[1] = vec![4];
        g.referenced_by[1] = vec![4];
        g.readers[4] = vec![5];
        g.reads[5] = vec![4];
        g.effects[4].writes = vec![6];
        g
    }

    #[test]
    fn a_partition_write_changes_the_parent_but_not_its_siblings() {
        let written = closure(&graph(), &[2], false);
        assert_eq!(written.ids, vec![0, 2, 3]);
        assert!(!written.unknown);
    }

    #[test]
    fn a_parent_write_reaches_partitions_cascades_views_and_trigger_targets() {
        assert_eq!(
            closure(&graph(), &[0], false).ids,
            vec![0, 1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn writing_a_view_writes_what_it_reads() {
        assert_eq!(
            closure(&graph(), &[3], false).ids,
            vec![0, 1, 2, 3, 4, 5, 6]
        );
    }

    #[test]
    fn unknown_effects_and_always_changed_relations_spread() {
        let mut g = graph();
        g.effects[6].unknown = true;
        g.always_changed = vec![7];
        let written = closure(&g, &[4], false);
        assert_eq!(written.ids, vec![4, 5, 6, 7]);
        assert!(written.unknown);
        assert_eq!(closure(&g, &[], false), IdClosure::default());
    }

    #[test]
    fn truncate_cascade_reaches_every_referencing_table() {
        let mut g = Graph::new(3);
        // 1 references 0 with NO ACTION (not a cascade), 2 references 1.
        g.referenced_by[0] = vec![1];
        g.referenced_by[1] = vec![2];
        assert_eq!(closure(&g, &[0], false).ids, vec![0]);
        assert_eq!(closure(&g, &[0], true).ids, vec![0, 1, 2]);
    }
}
