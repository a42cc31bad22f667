//! AudioSet records in: TFRecord framing, the SequenceExample decoder, and the inputs (files, folders, tar
//! archives, stdin) they are read from.

pub mod input;
pub mod record;
pub mod sequence_example;
