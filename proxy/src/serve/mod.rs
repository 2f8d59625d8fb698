//! `gatehouse serve`: listeners, sessions and the IO engine.
