//! Isolation Forest (Liu, Ting and Zhou, 2008), the algorithm of
//! scikit-learn's `IsolationForest`, written against linfa's traits.
//!
//! - Fit ([`linfa::traits::Fit`] on [`IsolationForestParams`]): each of the
//!   `n_trees` trees is grown on `ψ = min(max_samples, n)` rows drawn
//!   without replacement. A node picks a feature at random among those not
//!   constant in it and splits at a value drawn uniformly between the
//!   feature's minimum and maximum there (rows `<=` the value go left), until
//!   a node holds one row or reaches depth `ceil(log2 ψ)`.
//! - Path length of a row in a tree: the depth of the leaf it reaches plus
//!   `c(size of that leaf)`, the average depth of an unsuccessful search in
//!   a binary search tree of that size, standing for the unbuilt rest.
//! - Score: `s(x) = 2^(-E[h(x)] / c(ψ))`; [`IsolationForest::score_samples`]
//!   returns `-s(x)` like scikit-learn's `score_samples` (lower is more
//!   abnormal), and [`IsolationForest::decision_function`] subtracts the
//!   offset: `-0.5` with `contamination = auto` (an anomaly scores above
//!   0.5), else the `contamination` quantile of the training scores.
//! - Predict ([`linfa::traits::PredictInplace`]): `true` (an anomaly) when
//!   the decision function is below zero.
//!
//! Trees are stored flat (one `Vec` of nodes, children next to each other)
//! and scoring runs over rows in parallel with rayon when allowed.
//!
//! ```
//! use linfa::traits::{Fit, Predict};
//! use linfa::DatasetBase;
//! use ndarray::{array, Array1};
//! use rg_detector::isolation_forest::IsolationForestParams;
//!
//! let x = array![[0.0, 0.1], [0.1, 0.0], [0.05, 0.05], [0.0, 0.0], [0.1, 0.1], [8.0, 9.0]];
//! let forest = IsolationForestParams::default().seed(7).fit(&DatasetBase::from(x.clone())).unwrap();
//! let flags: Array1<bool> = forest.predict(&x);
//! assert!(flags[5]);
//! ```

use linfa::dataset::{DatasetBase, Records};
use linfa::traits::{Fit, PredictInplace};
use ndarray::{Array1, ArrayBase, Data, Ix2};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

/// Euler–Mascheroni constant.
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Average path length of an unsuccessful search in a binary search tree
/// of `n` nodes: `c(n) = 2 H(n-1) - 2 (n-1) / n`, `c(1) = 0`, `c(2) = 1`
/// (scikit-learn's `_average_path_length`).
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        n => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// How the decision threshold is set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contamination {
    /// scikit-learn's `contamination="auto"`: offset `-0.5`.
    Auto,
    /// The expected share of anomalies in the training data, in (0, 0.5]:
    /// the offset is that quantile of the training scores.
    Share(f64),
}

/// Hyper-parameters (the model is fitted with [`Fit::fit`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestParams {
    n_trees: usize,
    max_samples: usize,
    contamination: Contamination,
    seed: u64,
    parallel: bool,
}

impl Default for IsolationForestParams {
    /// 100 trees, 256 rows per tree, `contamination = auto`, seed 0,
    /// parallel scoring.
    fn default() -> Self {
        Self {
            n_trees: 100,
            max_samples: 256,
            contamination: Contamination::Auto,
            seed: 0,
            parallel: true,
        }
    }
}

impl IsolationForestParams {
    /// Number of trees (default 100).
    pub fn n_trees(mut self, n: usize) -> Self {
        self.n_trees = n;
        self
    }

    /// Rows drawn per tree (default 256; capped at the number of rows).
    pub fn max_samples(mut self, n: usize) -> Self {
        self.max_samples = n;
        self
    }

    /// Decision threshold (default [`Contamination::Auto`]).
    pub fn contamination(mut self, c: Contamination) -> Self {
        self.contamination = c;
        self
    }

    /// Seed of the random generator: the same seed and data give the same
    /// forest.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Score rows on all cores (default) or on the calling thread only.
    pub fn parallel(mut self, on: bool) -> Self {
        self.parallel = on;
        self
    }
}

/// Fitting failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IsolationForestError {
    /// No rows, or no features.
    #[error("cannot fit an isolation forest on {rows} rows of {features} features")]
    Empty {
        /// Rows given.
        rows: usize,
        /// Features given.
        features: usize,
    },
    /// A value is NaN or infinite.
    #[error("row {row}, feature {feature} is not a finite number")]
    NotFinite {
        /// Row index.
        row: usize,
        /// Feature index.
        feature: usize,
    },
    /// A parameter is out of range.
    #[error("invalid parameter: {0}")]
    Parameter(String),
    /// An error from linfa.
    #[error(transparent)]
    Linfa(#[from] linfa::Error),
}

/// One node of a flattened tree. A split sends `x[feature] <= threshold` to
/// `left` and the rest to `left + 1`. A leaf points at itself with an
/// infinite threshold, so a walk of a fixed number of steps ends on it
/// whatever its depth: scoring walks several rows in lockstep, without a
/// branch per node.
///
/// Values are compared as `f32`, as scikit-learn does (it converts `X` to
/// float32): the tree is grown and walked on the same rounded values, and
/// a node takes 12 bytes instead of 16.
#[derive(Debug, Clone, Copy)]
struct Node {
    threshold: f32,
    feature: u32,
    left: u32,
}

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    /// Per node: for a leaf, the path length of rows ending there
    /// (depth + c(size)); 0 for splits.
    values: Vec<f64>,
    /// Depth of the deepest leaf: steps of a walk.
    depth: usize,
}

/// Rows walked in lockstep.
const LANES: usize = 16;
/// Rows scored per block (their data and the running sums stay in cache
/// while every tree is walked).
const BLOCK: usize = 1024;

impl Tree {
    /// One step of a walk from node `i` for the row starting at `offset`.
    fn step(&self, i: usize, rows: &[f32], offset: usize) -> usize {
        let n = self.nodes[i];
        n.left as usize + usize::from(rows[offset + n.feature as usize] > n.threshold)
    }

    /// Adds each row's path length to `sums` (`rows` holds `sums.len()`
    /// rows of `nf` values).
    fn accumulate(&self, rows: &[f32], nf: usize, sums: &mut [f64]) {
        let full = sums.len() / LANES * LANES;
        for (c, acc) in sums[..full].chunks_exact_mut(LANES).enumerate() {
            let base = c * LANES;
            let offsets: [usize; LANES] = std::array::from_fn(|k| (base + k) * nf);
            let mut at = [0usize; LANES];
            for _ in 0..self.depth {
                for (i, offset) in at.iter_mut().zip(offsets) {
                    *i = self.step(*i, rows, offset);
                }
            }
            for (a, i) in acc.iter_mut().zip(at) {
                *a += self.values[i];
            }
        }
        for (r, a) in sums.iter_mut().enumerate().skip(full) {
            let mut i = 0;
            for _ in 0..self.depth {
                i = self.step(i, rows, r * nf);
            }
            *a += self.values[i];
        }
    }
}

/// Trees of up to this many nodes (ψ ≤ 256 gives at most 511) ...
const FAST_NODES: usize = 512;
/// ... over rows of up to this many features are walked from fixed-size
/// arrays indexed with a mask: no bounds check per step, which is most of
/// what a step costs.
const FAST_FEATURES: usize = 16;

/// A tree copied into fixed-size arrays for [`FAST_NODES`].
#[derive(Debug, Clone)]
struct FastTree {
    nodes: Box<[Node; FAST_NODES]>,
    values: Box<[f64; FAST_NODES]>,
    depth: usize,
}

impl FastTree {
    fn of(tree: &Tree) -> Option<Self> {
        if tree.nodes.len() > FAST_NODES {
            return None;
        }
        // Unused slots are leaves pointing at themselves (never reached).
        let mut nodes: Box<[Node; FAST_NODES]> = Box::new(std::array::from_fn(|i| Node {
            threshold: f32::INFINITY,
            feature: 0,
            left: i as u32,
        }));
        let mut values: Box<[f64; FAST_NODES]> = Box::new([0.0; FAST_NODES]);
        nodes[..tree.nodes.len()].copy_from_slice(&tree.nodes);
        values[..tree.values.len()].copy_from_slice(&tree.values);
        Some(Self {
            nodes,
            values,
            depth: tree.depth,
        })
    }

    fn step(&self, i: usize, row: &[f32; FAST_FEATURES]) -> usize {
        let n = self.nodes[i & (FAST_NODES - 1)];
        n.left as usize + usize::from(row[n.feature as usize & (FAST_FEATURES - 1)] > n.threshold)
    }

    fn accumulate(&self, rows: &[[f32; FAST_FEATURES]], sums: &mut [f64]) {
        let mut chunks = rows.chunks_exact(LANES);
        let mut sum_chunks = sums.chunks_exact_mut(LANES);
        for (chunk, acc) in (&mut chunks).zip(&mut sum_chunks) {
            let mut at = [0usize; LANES];
            for _ in 0..self.depth {
                for (i, row) in at.iter_mut().zip(chunk) {
                    *i = self.step(*i, row);
                }
            }
            for (a, i) in acc.iter_mut().zip(at) {
                *a += self.values[i & (FAST_NODES - 1)];
            }
        }
        for (row, a) in chunks.remainder().iter().zip(sum_chunks.into_remainder()) {
            let mut i = 0;
            for _ in 0..self.depth {
                i = self.step(i, row);
            }
            *a += self.values[i & (FAST_NODES - 1)];
        }
    }
}

/// A fitted forest.
#[derive(Debug, Clone)]
pub struct IsolationForest {
    trees: Vec<Tree>,
    /// The same trees for the fast walk, when they all fit.
    fast: Option<Vec<FastTree>>,
    /// ψ, the rows each tree was grown on.
    samples_per_tree: usize,
    n_features: usize,
    offset: f64,
    parallel: bool,
}

impl<D: Data<Elem = f64>, T> Fit<ArrayBase<D, Ix2>, T, IsolationForestError>
    for IsolationForestParams
{
    type Object = IsolationForest;

    fn fit(
        &self,
        dataset: &DatasetBase<ArrayBase<D, Ix2>, T>,
    ) -> Result<IsolationForest, IsolationForestError> {
        let x = dataset.records();
        let (rows, features) = (x.nsamples(), x.nfeatures());
        if rows == 0 || features == 0 {
            return Err(IsolationForestError::Empty { rows, features });
        }
        if self.n_trees == 0 || self.max_samples == 0 {
            return Err(IsolationForestError::Parameter(
                "n_trees and max_samples must be at least 1".into(),
            ));
        }
        if let Contamination::Share(c) = self.contamination {
            if !(c > 0.0 && c <= 0.5) {
                return Err(IsolationForestError::Parameter(format!(
                    "contamination {c} is outside (0, 0.5]"
                )));
            }
        }
        if let Some(((row, feature), _)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(IsolationForestError::NotFinite { row, feature });
        }
        let psi = self.max_samples.min(rows);
        let max_depth = (psi as f64).log2().ceil().max(0.0) as usize;
        let mut rng = StdRng::seed_from_u64(self.seed);
        let data = to_f32_rows(x);
        let trees: Vec<Tree> = (0..self.n_trees)
            .map(|_| {
                let mut rows_of_tree = rand::seq::index::sample(&mut rng, rows, psi).into_vec();
                grow(&data, features, &mut rows_of_tree, max_depth, &mut rng)
            })
            .collect();
        let fast = if features <= FAST_FEATURES {
            trees.iter().map(FastTree::of).collect::<Option<Vec<_>>>()
        } else {
            None
        };
        let mut forest = IsolationForest {
            trees,
            fast,
            samples_per_tree: psi,
            n_features: features,
            offset: -0.5,
            parallel: self.parallel,
        };
        if let Contamination::Share(c) = self.contamination {
            let mut scores = forest.score_samples(x).to_vec();
            forest.offset = percentile(&mut scores, 100.0 * c);
        }
        Ok(forest)
    }
}

/// Grows one tree over `rows` (indices into `x`, reordered in place).
/// The rows of `x` as one row-major `f32` slice.
fn to_f32_rows<D: Data<Elem = f64>>(x: &ArrayBase<D, Ix2>) -> Vec<f32> {
    x.as_standard_layout().iter().map(|v| *v as f32).collect()
}

/// Grows one tree over `rows` (indices of rows of `data`, `nf` values
/// each), reordering them in place.
fn grow(data: &[f32], nf: usize, rows: &mut [usize], max_depth: usize, rng: &mut StdRng) -> Tree {
    let n_features = nf;
    let value = |r: usize, f: usize| data[r * nf + f];
    let mut tree = Tree {
        nodes: vec![Node {
            threshold: f32::INFINITY,
            feature: 0,
            left: 0,
        }],
        values: vec![0.0],
        depth: 0,
    };
    // (node index, start, end, depth) still to split.
    let mut stack = vec![(0usize, 0usize, rows.len(), 0usize)];
    let mut order: Vec<usize> = (0..n_features).collect();
    while let Some((at, start, end, depth)) = stack.pop() {
        let size = end - start;
        let part = &mut rows[start..end];
        let leaf = |tree: &mut Tree| {
            tree.nodes[at] = Node {
                threshold: f32::INFINITY,
                feature: 0,
                left: at as u32,
            };
            tree.values[at] = depth as f64 + average_path_length(size);
            tree.depth = tree.depth.max(depth);
        };
        if depth >= max_depth || size <= 1 {
            leaf(&mut tree);
            continue;
        }
        // Draw features without replacement until one varies in this node.
        let mut split = None;
        for k in 0..n_features {
            let pick = rng.random_range(k..n_features);
            order.swap(k, pick);
            let f = order[k];
            let (lo, hi) = part
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &r| {
                    let v = value(r, f);
                    (lo.min(v), hi.max(v))
                });
            if hi > lo {
                let mut t = rng.random_range(lo..hi);
                if t >= hi {
                    t = lo;
                }
                split = Some((f, t));
                break;
            }
        }
        let Some((feature, threshold)) = split else {
            leaf(&mut tree);
            continue;
        };
        // Partition: rows with x <= threshold first.
        let mut mid = 0;
        for i in 0..part.len() {
            if value(part[i], feature) <= threshold {
                part.swap(i, mid);
                mid += 1;
            }
        }
        let left = tree.nodes.len();
        tree.nodes.extend(
            [Node {
                threshold: f32::INFINITY,
                feature: 0,
                left: 0,
            }; 2],
        );
        tree.values.extend([0.0; 2]);
        tree.nodes[at] = Node {
            threshold,
            feature: feature as u32,
            left: left as u32,
        };
        stack.push((left + 1, start + mid, end, depth + 1));
        stack.push((left, start, start + mid, depth + 1));
    }
    tree
}

/// The `q`-th percentile (0..=100) with linear interpolation, as numpy's
/// default.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let pos = (q / 100.0).clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    values[lo] + (values[hi] - values[lo]) * (pos - lo as f64)
}

impl IsolationForest {
    /// scikit-learn's `score_samples`: `-2^(-E[h(x)] / c(ψ))`, in [-1, 0);
    /// the lower, the more abnormal. Non-finite values are scored as the
    /// most abnormal possible (-1).
    pub fn score_samples<D: Data<Elem = f64>>(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        let n = x.nrows();
        if x.ncols() != self.n_features {
            return Array1::from_elem(n, -1.0);
        }
        let nf = self.n_features;
        let standard = x.as_standard_layout();
        let original = standard.as_slice().unwrap_or(&[]);
        // The fast walk converts each block as it pads it.
        let rows = if self.fast.is_some() {
            Vec::new()
        } else {
            to_f32_rows(x)
        };
        let denominator = self.trees.len() as f64 * average_path_length(self.samples_per_tree);
        let mut sums = vec![0.0; n];
        let score_block = |(b, sums): (usize, &mut [f64])| {
            let span = b * BLOCK * nf..(b * BLOCK + sums.len()) * nf;
            match &self.fast {
                Some(fast) => {
                    let padded: Vec<[f32; FAST_FEATURES]> = original[span]
                        .chunks_exact(nf)
                        .map(|row| {
                            let mut p = [0f32; FAST_FEATURES];
                            for (to, from) in p.iter_mut().zip(row) {
                                *to = *from as f32;
                            }
                            p
                        })
                        .collect();
                    for tree in fast {
                        tree.accumulate(&padded, sums);
                    }
                }
                None => {
                    for tree in &self.trees {
                        tree.accumulate(&rows[span.clone()], nf, sums);
                    }
                }
            }
        };
        if self.parallel && n >= 2 * BLOCK {
            sums.par_chunks_mut(BLOCK).enumerate().for_each(score_block);
        } else {
            sums.chunks_mut(BLOCK).enumerate().for_each(score_block);
        }
        let mut scores = Array1::zeros(n);
        for (r, (score, depth)) in scores.iter_mut().zip(sums).enumerate() {
            let row = &original[r * nf..(r + 1) * nf];
            *score = if row.iter().any(|v| !v.is_finite()) {
                -1.0
            } else if denominator > 0.0 {
                -(2f64.powf(-depth / denominator))
            } else {
                // ψ = 1: every tree is a single leaf; nothing can be told apart.
                -0.5
            };
        }
        scores
    }

    /// `score_samples - offset`: below zero is an anomaly.
    pub fn decision_function<D: Data<Elem = f64>>(&self, x: &ArrayBase<D, Ix2>) -> Array1<f64> {
        self.score_samples(x) - self.offset
    }

    /// The offset subtracted by [`IsolationForest::decision_function`].
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// Number of features it was fitted on.
    pub fn n_features(&self) -> usize {
        self.n_features
    }
}

impl<D: Data<Elem = f64>> PredictInplace<ArrayBase<D, Ix2>, Array1<bool>> for IsolationForest {
    /// `true` where the row is an anomaly (decision function below zero).
    fn predict_inplace(&self, x: &ArrayBase<D, Ix2>, y: &mut Array1<bool>) {
        let d = self.decision_function(x);
        for (flag, v) in y.iter_mut().zip(d.iter()) {
            // Rows the forest cannot tell apart score exactly the offset up
            // to rounding; they are not anomalies.
            *flag = *v < -1e-9;
        }
    }

    fn default_target(&self, x: &ArrayBase<D, Ix2>) -> Array1<bool> {
        Array1::from_elem(x.nrows(), false)
    }
}

#[cfg(test)]
mod tests {
    use linfa::traits::Predict;
    use ndarray::{Array2, Axis};
    use proptest::{prop_assert, proptest};

    use super::*;

    fn fit(x: &Array2<f64>, params: IsolationForestParams) -> IsolationForest {
        params.fit(&DatasetBase::from(x.clone())).unwrap()
    }

    /// A normal cloud plus a few far points, from a fixed seed.
    fn cloud(normal: usize, outliers: usize, seed: u64) -> Array2<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut rows = Vec::new();
        for _ in 0..normal {
            rows.extend([
                rng.random_range(-1.0f64..1.0),
                rng.random_range(-1.0f64..1.0),
            ]);
        }
        for _ in 0..outliers {
            rows.extend([rng.random_range(6.0f64..8.0), rng.random_range(6.0f64..8.0)]);
        }
        Array2::from_shape_vec((normal + outliers, 2), rows).unwrap()
    }

    #[test]
    fn c_matches_scikit_learn() {
        // Values of sklearn.ensemble._iforest._average_path_length.
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        assert!((average_path_length(256) - 10.244_770_920_116_851).abs() < 1e-9);
        assert!((average_path_length(3) - 1.207_392_357_586_464).abs() < 1e-9);
    }

    #[test]
    fn outliers_score_lowest_and_are_flagged() {
        let x = cloud(500, 10, 1);
        let forest = fit(&x, IsolationForestParams::default().seed(3));
        let scores = forest.score_samples(&x);
        let worst_normal = scores
            .iter()
            .take(500)
            .fold(f64::INFINITY, |a, b| a.min(*b));
        let best_outlier = scores
            .iter()
            .skip(500)
            .fold(f64::NEG_INFINITY, |a, b| a.max(*b));
        assert!(
            best_outlier < worst_normal,
            "outliers {best_outlier} vs normal {worst_normal}"
        );
        let flags: Array1<bool> = forest.predict(&x);
        assert!(flags.iter().skip(500).all(|f| *f));
        assert!(scores.iter().all(|s| (-1.0..0.0).contains(s)));
    }

    #[test]
    fn the_same_seed_gives_the_same_forest() {
        let x = cloud(300, 5, 2);
        let a = fit(&x, IsolationForestParams::default().seed(11)).score_samples(&x);
        let b = fit(&x, IsolationForestParams::default().seed(11)).score_samples(&x);
        let c = fit(&x, IsolationForestParams::default().seed(12)).score_samples(&x);
        assert_eq!(a, b);
        assert_ne!(a, c);
        // Parallel and sequential scoring agree.
        let seq = fit(
            &x,
            IsolationForestParams::default().seed(11).parallel(false),
        )
        .score_samples(&x);
        assert_eq!(a, seq);
    }

    #[test]
    fn contamination_flags_that_share_of_the_training_data() {
        let x = cloud(1000, 0, 4);
        let forest = fit(
            &x,
            IsolationForestParams::default()
                .contamination(Contamination::Share(0.05))
                .seed(1),
        );
        let flags: Array1<bool> = forest.predict(&x);
        let share = flags.iter().filter(|f| **f).count() as f64 / 1000.0;
        assert!((share - 0.05).abs() <= 0.002, "{share}");
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        let params = IsolationForestParams::default();
        let empty = Array2::<f64>::zeros((0, 3));
        assert!(matches!(
            params.fit(&DatasetBase::from(empty)),
            Err(IsolationForestError::Empty { .. })
        ));
        let one = Array2::from_elem((1, 3), 5.0);
        let f = fit(&one, params.clone());
        assert_eq!(f.score_samples(&one).to_vec(), [-0.5]);
        let same = Array2::from_elem((50, 3), 1.0);
        let f = fit(&same, params.clone());
        let s = f.score_samples(&same);
        assert!(s.iter().all(|v| *v == s[0]), "identical rows score alike");
        let mut nan = cloud(20, 0, 5);
        nan[[3, 1]] = f64::NAN;
        assert!(matches!(
            params.fit(&DatasetBase::from(nan.clone())),
            Err(IsolationForestError::NotFinite { row: 3, feature: 1 })
        ));
        // Scoring a NaN row marks it most abnormal instead of panicking.
        let f = fit(&cloud(20, 0, 5), params);
        assert_eq!(f.score_samples(&nan)[3], -1.0);
        assert_eq!(f.score_samples(&nan.select(Axis(0), &[0, 1])).len(), 2);
    }

    proptest! {
        #[test]
        fn scores_stay_in_range(values in proptest::collection::vec(-1e6f64..1e6, 2..200), seed in 0u64..1000) {
            let n = values.len() / 2;
            let x = Array2::from_shape_vec((n, 2), values[..n * 2].to_vec()).unwrap();
            let forest = fit(&x, IsolationForestParams::default().n_trees(10).seed(seed));
            for s in forest.score_samples(&x) {
                prop_assert!((-1.0..0.0).contains(&s), "{s}");
            }
        }
    }
}
