"""Paths longer than PATH_MAX below the mount point: the kernel hands the
driver one component at a time, so a process working deep in a tree must be
able to create, read, rename and remove there (pjdfstest's */03.t cases)."""

import os


def test_file_deeper_than_path_max_is_created_read_renamed_and_removed(vault):
    mnt = str(vault.mnt)
    comp = "d" * 200
    made = []
    cwd = os.getcwd()
    try:
        os.chdir(mnt)
        depth = 0
        while depth * (len(comp) + 1) < 4096 + 512:
            os.mkdir(comp)
            os.chdir(comp)
            made.append(comp)
            depth += 1
        with open("deep.txt", "w") as f:
            f.write("deep contract text")
        os.rename("deep.txt", "deeper.txt")
        with open("deeper.txt") as f:
            assert f.read() == "deep contract text"
        assert os.listdir(".") == ["deeper.txt"]
        os.unlink("deeper.txt")
        for _ in made:
            os.chdir("..")
            os.rmdir(comp)
        assert os.listdir(mnt) == []
    finally:
        os.chdir(cwd)
