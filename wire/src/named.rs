//! `named_i32!`: an `i32` newtype whose known values are named constants, with
//! `name()`, `ALL`, and `Debug`/`Display` that show the name. Content types and header
//! ids are both such numbers.

/// Declares the constants of an `i32` newtype `$ty` (which must be a tuple struct over
/// `i32` defined beside the call) and its name look-up and formatting.
macro_rules! named_i32 {
    ($ty:ident { $( $(#[$doc:meta])* $name:ident = $value:expr; )* }) => {
        impl $ty {
            $( $(#[$doc])* pub const $name: Self = Self($value); )*

            /// The symbolic name of a known value.
            pub fn name(self) -> Option<&'static str> {
                match self {
                    $( Self::$name => Some(stringify!($name)), )*
                    _ => None,
                }
            }

            /// Every value this crate knows, in declaration order.
            pub const ALL: &'static [Self] = &[$( Self::$name ),*];
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.name() {
                    Some(name) => write!(f, "{name}({})", self.0),
                    None => write!(f, concat!(stringify!($ty), "({})"), self.0),
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self, f)
            }
        }
    };
}

pub(crate) use named_i32;
