pub mod host;
pub mod inspect;
pub mod lattice;
pub mod oci;
pub mod run;
