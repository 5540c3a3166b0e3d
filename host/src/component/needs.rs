//! What one instance of a component takes from the instance pool, read from its bytes.
//!
//! The pooling allocator reserves its slots when the engine is made: how many core instances,
//! memories and tables may be alive at once, and how large a table may be. Components differ
//! widely: a Rust component instantiates 3 core modules, one made with ComponentizeJS 4, one
//! made with componentize-py 14 (CPython and its libraries, dynamically linked), with tables of
//! thousands of functions. The host reads the needs of the components it starts with and sizes
//! the pool for them, so that every partner can run its full concurrency, rather than guessing
//! one size for all. A component loaded later (a reload) that needs more than the pool was
//! sized for is refused, naming what it needs; the running version keeps serving.
//!
//! The counts come from the binary's sections (with `wasmparser`, the parser wasmtime itself
//! uses) before compiling: a core instantiation in any nested component counts once, and each
//! module's defined memories and tables count once per instantiation of a module.

use anyhow::Context as _;
use wasmparser::{Instance, Parser, Payload};

/// Pool resources one component instance takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolNeeds {
    /// Core module instances.
    pub core_instances: u32,
    /// Linear memories defined by those modules.
    pub memories: u32,
    /// Tables defined by those modules.
    pub tables: u32,
    /// Initial elements of the largest table.
    pub table_elements: u64,
}

impl PoolNeeds {
    /// The floor the pool is sized with, whatever the components: what a Rust component needs,
    /// with room to grow, and wasmtime's own default table size.
    pub const FLOOR: PoolNeeds = PoolNeeds {
        core_instances: 8,
        memories: 1,
        tables: 2,
        table_elements: 20_000,
    };

    /// Reads the needs of the component `wasm`.
    pub fn of(wasm: &[u8]) -> anyhow::Result<Self> {
        let mut needs = PoolNeeds {
            core_instances: 0,
            memories: 0,
            tables: 0,
            table_elements: 0,
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload.context("reading the component's sections")? {
                Payload::InstanceSection(instances) => {
                    for instance in instances {
                        if matches!(instance?, Instance::Instantiate { .. }) {
                            needs.core_instances += 1;
                        }
                    }
                }
                Payload::MemorySection(memories) => needs.memories += memories.count(),
                Payload::TableSection(tables) => {
                    for table in tables {
                        needs.tables += 1;
                        needs.table_elements = needs.table_elements.max(table?.ty.initial);
                    }
                }
                _ => {}
            }
        }
        Ok(needs)
    }

    /// The linear memory one instance of `wasm` starts with, in bytes: the initial size of every
    /// memory its modules define. The pool resets it after every call, so it prices each call.
    pub fn initial_memory_bytes(wasm: &[u8]) -> anyhow::Result<u64> {
        let mut bytes = 0u64;
        for payload in Parser::new(0).parse_all(wasm) {
            if let Payload::MemorySection(memories) = payload.context("reading the component's sections")? {
                for memory in memories {
                    let memory = memory?;
                    let page = 1u64 << memory.page_size_log2.unwrap_or(16);
                    bytes = bytes.saturating_add(memory.initial.saturating_mul(page));
                }
            }
        }
        Ok(bytes)
    }

    /// The larger of each need.
    pub fn max(self, other: PoolNeeds) -> PoolNeeds {
        PoolNeeds {
            core_instances: self.core_instances.max(other.core_instances),
            memories: self.memories.max(other.memories),
            tables: self.tables.max(other.tables),
            table_elements: self.table_elements.max(other.table_elements),
        }
    }

    /// The pool size for components needing `self`, with room for a later version of them to
    /// grow: twice the counts (a counter costs nothing until used) and twice the largest
    /// table, never below [`PoolNeeds::FLOOR`].
    pub fn with_headroom(self) -> PoolNeeds {
        PoolNeeds {
            core_instances: self.core_instances.saturating_mul(2),
            memories: self.memories,
            tables: self.tables,
            table_elements: self.table_elements.saturating_mul(2),
        }
        .max(PoolNeeds::FLOOR)
    }

    /// Why a component needing `self` does not fit a pool sized for `pool`, if it does not.
    pub fn exceeds(&self, pool: &PoolNeeds) -> Option<String> {
        let over = [
            (
                "core module instances",
                u64::from(self.core_instances),
                u64::from(pool.core_instances),
            ),
            ("memories", u64::from(self.memories), u64::from(pool.memories)),
            ("tables", u64::from(self.tables), u64::from(pool.tables)),
            ("table elements", self.table_elements, pool.table_elements),
        ]
        .into_iter()
        .filter(|(_, need, have)| need > have)
        .map(|(what, need, have)| format!("{need} {what} (the pool has room for {have})"))
        .collect::<Vec<_>>();
        (!over.is_empty()).then(|| over.join(", "))
    }
}
