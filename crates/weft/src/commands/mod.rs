pub mod host;
pub mod inspect;
pub mod run;
