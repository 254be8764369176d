"""pathcore: latency-bounded path computation (Rust, via PyO3)."""
from pathcore._pathcore import *  # noqa: F403
