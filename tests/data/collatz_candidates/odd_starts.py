"""Collatz chains: how many steps from n down to 1, and the longest chain below a limit."""


def steps(n):
    """The number of Collatz steps from ``n`` down to 1."""
    count = 0
    while n != 1:
        n = n // 2 if n % 2 == 0 else 3 * n + 1
        count += 1
    return count


def longest(limit):
    """(start, its steps, starts tried) for the start below ``limit`` with the longest chain."""
    best, best_steps, tried = 1, 0, 0
    for start in range(1, limit, 2):  # the even starts are skipped: half the work
        count = steps(start)
        tried += 1
        if count > best_steps:
            best, best_steps = start, count
    return best, best_steps, tried
