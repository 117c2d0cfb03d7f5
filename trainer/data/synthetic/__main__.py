"""`python -m trainer.data.synthetic --rows N [--seed S] [--items N] ... --out FILE`: see `writer.main`."""

from trainer.data.synthetic.writer import main

if __name__ == "__main__":
    main()
