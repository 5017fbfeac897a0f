from walker_creator import walker_creator


def make_square(wc, x0, y0, x1, y1):
    """Four corner joints, counter-clockwise from the bottom left."""
    return [
        wc.add_joint(x0, y0),
        wc.add_joint(x1, y0),
        wc.add_joint(x1, y1),
        wc.add_joint(x0, y1),
    ]


def make_walker():
    wc = walker_creator()
    corners = make_square(wc, 0.0, 0.0, 10.0, 10.0)
    center = wc.add_joint(5.0, 5.0)
    # the sides are passive springs that hold the square's shape
    for k in range(4):
        wc.add_muscle(corners[k], corners[(k + 1) % 4])
    # one spoke from the centre is passive, the other three push and pull in turn
    wc.add_muscle(corners[2], center)
    wc.add_muscle(corners[3], center, amplitude=4.0, phase=0.0)
    wc.add_muscle(corners[0], center, amplitude=4.0, phase=0.25)
    wc.add_muscle(corners[1], center, amplitude=4.0, phase=0.5)
    return wc.get_walker()
