//! Layer 2: the bridge domains' MAC tables ([`fdb`]) and the forwarding
//! decision ([`engine`]), sans-IO — driven with `now` and frames, tested with
//! a virtual clock. The engine decides only: forward, flood, drop (counted),
//! or hand to the domain's gateway; it knows no ports' I/O and no gateway logic.

pub mod engine;
pub mod fdb;

pub use engine::{DomainConfig, Engine, EngineError, PortConfig, Verdict};
pub use fdb::FdbEntry;
