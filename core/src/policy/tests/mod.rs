mod classify;
mod verdict;
