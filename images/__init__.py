"""Golden images: recipes (recipe.py) that build VM disk images with the runner
inside (build.py), the runner artefact (bundle.py), the guest's runner
service definitions (services/), and the import into ZFS (importer.py).
``solstice-image`` (cli.py) drives them."""
