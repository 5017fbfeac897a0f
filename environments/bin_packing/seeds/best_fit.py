"""Best fit: put the item where it leaves the least room."""



def priority(item, bins):
    return -(bins - item)
