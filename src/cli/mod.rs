//! The `tollgate` command's subcommands, one module each.

pub mod budgets;
pub mod check_config;
pub mod cost;
pub mod count_tokens;
pub mod prices;
pub mod report;
pub mod report_budgets;
pub mod translate;
