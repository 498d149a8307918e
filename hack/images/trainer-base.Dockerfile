# The local stand-in for the trainer image's base (pytorch/pytorch:...-runtime): the
# Debian Python base plus the trainer venv's packages (hack/trainer-venv.sh: exactly
# trainer-image/requirements.txt, torch with its CUDA libraries, which it loads even
# when it then runs on the CPU). Triton (torch.compile only), pip and setuptools stay
# out. Named contexts: base (the Debian image), venv (the venv's site-packages).
FROM base
COPY --from=venv --exclude=triton --exclude=triton-* --exclude=pip --exclude=pip-* \
     --exclude=setuptools --exclude=setuptools-* --exclude=_distutils_hack \
     --exclude=distutils-precedence.pth --exclude=__pycache__ \
     . /usr/local/lib/python3.11/dist-packages/
