//! Tests of the whole Hibernation pass: steps in order, outcomes recorded, round identity.

use super::*;
