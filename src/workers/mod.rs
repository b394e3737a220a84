//! Background work. Each worker is a loop of passes; a pass claims what is due and
//! acts on it, safe to run in every replica at once (claims are fenced in the store).
pub mod deliverer;
pub mod pruner;
pub mod refresher;
pub mod scanner;
