import math

from walker_creator import walker_creator


def make_circle(wc, cx, cy, radius, num_points):
    """num_points joints spaced evenly round the circle of centre (cx, cy)."""
    joints = []
    step = 2.0 * 3.14 / num_points
    for k in range(num_points):
        angle = k * step
        joints.append(wc.add_joint(cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return joints


def make_walker():
    wc = walker_creator()

    num_points = 8
    radius = 5.0
    cx, cy = 5, 5
    rim = make_circle(wc, cx, cy, radius, num_points)
    hub = wc.add_joint(cx, cy)

    for k in range(num_points):
        # the rim holds its shape; each spoke pulses, later and stronger round the wheel
        wc.add_muscle(rim[k], rim[(k + 1) % num_points])
        wc.add_muscle(rim[k], hub, k / num_points, k / num_points)

    return wc.get_walker()
