//! The `agent-relay` command line (feature `cli`): argument parsing with clap
//! and one module per subcommand, plus [`client`], the small async client
//! that `exec`, `demo` and the tests share.

pub mod client;
