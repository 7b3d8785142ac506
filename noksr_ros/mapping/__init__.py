"""The segment map: serialization-keyed cubes of accumulated points, dirty bits and the store."""
