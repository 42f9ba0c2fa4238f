from __future__ import annotations

import numpy as np

from clca_deploy.runtime.scores import softmax, top_classes


def test_softmax_rows_sum_to_one_and_survive_huge_logits():
    logits = np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]], dtype=np.float32)
    probabilities = softmax(logits)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probabilities[0], [0.5, 0.5, 0.0], atol=1e-7)
    np.testing.assert_allclose(probabilities[1], [0.2, 0.6, 0.2], rtol=1e-6)


def test_top_classes_best_first_with_ties_to_the_lower_index():
    probabilities = np.array([[0.1, 0.3, 0.3, 0.2, 0.1]], dtype=np.float32)
    indices, scores = top_classes(probabilities, 4)
    assert indices.tolist() == [[1, 2, 3, 0]] and indices.dtype == np.int64
    np.testing.assert_array_equal(scores, probabilities[:, [1, 2, 3, 0]])
    assert scores.dtype == np.float32
