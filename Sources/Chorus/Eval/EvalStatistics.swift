/// The statistics an eval report needs, written out: a proportion's confidence interval
/// and percentiles of a sample.
enum EvalStatistics {
    /// The Wilson score interval for `passed` successes in `total` trials at 95%
    /// (z = 1.959964). Unlike the normal approximation it stays inside [0, 1] and is right
    /// at 0 or `total` successes, which small evals hit often.
    static func wilson95(passed: Int, total: Int) -> (low: Double, high: Double) {
        guard total > 0 else { return (0, 1) }
        let z = 1.959963984540054
        let n = Double(total)
        let p = Double(passed) / n
        let z2 = z * z
        let centre = (p + z2 / (2 * n)) / (1 + z2 / n)
        let half = z * (p * (1 - p) / n + z2 / (4 * n * n)).squareRoot() / (1 + z2 / n)
        return (max(0, centre - half), min(1, centre + half))
    }

    /// The `q` quantile (0…1) of `values` by the nearest-rank method; 0 for no values.
    static func percentile(_ values: [Double], _ q: Double) -> Double {
        guard !values.isEmpty else { return 0 }
        let sorted = values.sorted()
        let rank = Int((q * Double(sorted.count)).rounded(.up))
        return sorted[min(sorted.count - 1, max(0, rank - 1))]
    }
}
