from walker_creator import walker_creator


def make_square(wc, x0, y0, x1, y1):
    """Four corners of the box from (x0, y0) to (x1, y1), going round it."""
    first = wc.add_joint(x0, y0)
    second = wc.add_joint(x0, y1)
    third = wc.add_joint(x1, y1)
    fourth = wc.add_joint(x1, y0)
    return first, second, third, fourth


def make_walker():
    wc = walker_creator()

    # a square body with a joint in its middle
    corners = make_square(wc, 0, 0, 10, 10)
    middle = wc.add_joint(5, 5)

    # the four sides are passive (distance) muscles
    for k in range(4):
        wc.add_muscle(corners[k], corners[(k + 1) % 4])

    # one spoke is passive too
    wc.add_muscle(corners[3], middle)

    # the other three spokes are active, with different strengths
    wc.add_muscle(corners[0], middle, 5.0, 0.0)
    wc.add_muscle(corners[1], middle, 10.0, 0.0)
    wc.add_muscle(corners[2], middle, 2.0, 0.0)

    return wc.get_walker()
