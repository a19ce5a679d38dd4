pub mod build;
pub mod completions;
pub mod host;
pub mod inspect;
pub mod lattice;
pub mod new;
pub mod oci;
pub mod run;
