"""What every layer uses: user errors, atomic writes, image files, stable seeds, DDP gathering, RNG states."""
