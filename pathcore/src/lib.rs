//! pathcore: placeholder
#[cfg(feature = "python")]
use pyo3::prelude::*;

#[cfg(feature = "python")]
#[pymodule]
fn _pathcore(_m: &Bound<'_, PyModule>) -> PyResult<()> {
    Ok(())
}
