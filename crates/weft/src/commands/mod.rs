pub mod host;
pub mod inspect;
pub mod lattice;
pub mod run;
