//! TCP through the gateway: outbound NAT and published ports, by terminating
//! each container connection in the switch (see [`relay`] for the decisions).
//!
//! - [`relay`]: the relay — one smoltcp stack per endpoint, connections whose
//!   state ([`Conn`]) the caller keeps with its flow, host streams behind
//!   [`HostStream`];
//! - [`device`]: the smoltcp device of a stack (frames out in bursts, GSO
//!   described on offload ports);
//! - [`segment`]: the segment shaping the relay needs (SYN destination, MSS
//!   raise, GSO and partial checksums), pure functions on bytes.

pub mod device;
pub mod relay;
pub mod segment;

pub use device::FrameSink;
pub use relay::{Conn, HostStream, RECV_BUFFER, SEND_BUFFER, StackConfig, Step, TcpRelay};
