//! The Explore tab: the five NEPA maps of the selected image, the query patch, and "adapt
//! to my images".

mod page;
mod state;
mod views;

pub use page::ExplorePage;
