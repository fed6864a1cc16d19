//! The route handlers, one module per concern. None of them imports
//! another or the router.

pub mod health;
pub mod history;
pub mod kserve;
pub mod repository;
pub mod seed;
pub mod statistics;
