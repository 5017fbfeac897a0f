import math

from walker_creator import walker_creator


def make_circle(wc, cx, cy, radius, num_points):
    """Joints evenly spaced on a circle, clockwise from the left."""
    joints = []
    for k in range(num_points):
        angle = 2.0 * math.pi * k / num_points
        joints.append(wc.add_joint(cx - radius * math.cos(angle), cy + radius * math.sin(angle)))
    return joints


def make_walker():
    wc = walker_creator()
    num_points = 8
    radius = 6.0
    cx, cy = 6.0, 6.0
    rim = make_circle(wc, cx, cy, radius, num_points)
    center = wc.add_joint(cx, cy)
    for k in range(num_points):
        # the rim is passive; the spokes contract one after another, a wave around the wheel
        wc.add_muscle(rim[k], rim[(k + 1) % num_points])
        wc.add_muscle(rim[k], center, amplitude=1.5, phase=k / num_points)
    return wc.get_walker()
